"""What every SAF node must look like from outside once site.yml has run, judged against the
inventory (the ``wanted`` fixture in conftest.py). testinfra runs each spec once per host of --hosts."""

from __future__ import annotations

import ipaddress
import json
import shlex

import pytest

EVERY, HEAD = "every node", "head node"
ALL = "*"  # all interfaces: 0.0.0.0 and/or ::
# Ray's ports, from roles/saf/defaults/main.yml, where each listens and on which addresses.
# Ray 2.49.2 binds its servers to all interfaces whatever --node-ip-address says: the gRPC servers
# (GCS, raylet, object manager, workers, the agent's gRPC) on the dual-stack wildcard (ss shows *),
# the Python agents and Prometheus exporters on 0.0.0.0 unless the node IP is 127.0.0.1
# (ray/dashboard/agent.py, dashboard/http_server_agent.py, _private/runtime_env/agent/main.py,
# dashboard/head.py, autoscaler/_private/monitor.py). Only the Ray Client server binds the node IP,
# and 127.0.0.1 besides (util/client/server/proxier.py); the dashboard binds --dashboard-host.
# That is why the firewall (roles/cluster_firewall) guards the ports rather than the addresses.
PORTS = {
    "saf_ray_gcs_port": (HEAD, ALL),
    "saf_ray_client_server_port": (HEAD, "node and loopback"),
    "saf_ray_dashboard_port": (HEAD, "saf_ray_dashboard_host"),
    "saf_ray_autoscaler_metrics_port": (HEAD, ALL),
    "saf_ray_dashboard_metrics_port": (HEAD, ALL),
    "saf_ray_node_manager_port": (EVERY, ALL),
    "saf_ray_object_manager_port": (EVERY, ALL),
    "saf_ray_runtime_env_agent_port": (EVERY, ALL),
    "saf_ray_dashboard_agent_grpc_port": (EVERY, ALL),
    "saf_ray_dashboard_agent_port": (EVERY, ALL),
    "saf_ray_metrics_export_port": (EVERY, ALL),
}


def wanted_addresses(wanted, binds) -> set:
    if binds == "node and loopback":
        return {wanted["saf_node_ip"], "127.0.0.1"}
    if binds == "saf_ray_dashboard_host":
        host = wanted["saf_ray_dashboard_host"]
        return {ALL if host in ("0.0.0.0", "::") else host}
    return {binds}


def node_ports(wanted) -> set:
    """The ports this node's Ray is configured to listen on (head-only ones only on the head)."""
    return {wanted[var] for var, (where, _) in PORTS.items() if where == EVERY or wanted["head"]}


# --- The runtime tuple ----------------------------------------------------------------------------

@pytest.mark.python
def test_interpreter_is_the_pinned_release(host, name, wanted):
    """The interpreter at saf_python_interpreter reports exactly saf_python_version: Ray refuses a
    node whose Python patch release differs from the head's, so parity is exact."""
    interpreter = wanted["saf_python_interpreter"]
    version = host.check_output(f"{shlex.quote(interpreter)} -c 'import platform; print(platform.python_version())'")
    assert version == wanted["saf_python_version"], f"{name}: {interpreter} is Python {version}"


@pytest.mark.venv
def test_venv_imports_ray_and_mlx_at_the_pinned_versions(host, name, wanted):
    """The venv (saf_venv_dir) runs saf_python_version and imports ray at saf_ray_version and
    mlx.core at saf_mlx_version: the tuple the parity gate holds every node to."""
    script = "import json, platform, ray, mlx.core as mx; print(json.dumps([platform.python_version(), ray.__version__, mx.__version__]))"
    python = f"{wanted['saf_venv_dir']}/bin/python"
    seen = json.loads(host.check_output(f"{shlex.quote(python)} -c {shlex.quote(script)}"))
    pins = [wanted["saf_python_version"], wanted["saf_ray_version"], wanted["saf_mlx_version"]]
    assert seen == pins, f"{name}: {python} has Python, Ray, MLX {seen}; the inventory pins {pins}"


@pytest.mark.ray
def test_start_record_agrees_with_the_inventory(name, wanted, record):
    """The record site.yml wrote (saf_ray_start_record) says it started Ray with the
    inventory's pins, paths, addresses and role."""
    seen = {"python": record["runtime"]["python"], "ray": record["runtime"]["ray"], "mlx": record["runtime"]["mlx"],
            "interpreter": record["interpreter"], "venv": record["venv"], "node_ip": record["node_ip"],
            "gcs_address": record["gcs_address"], "head": record["head"]}
    want = {"python": wanted["saf_python_version"], "ray": wanted["saf_ray_version"], "mlx": wanted["saf_mlx_version"],
            "interpreter": wanted["saf_python_interpreter"], "venv": wanted["saf_venv_dir"],
            "node_ip": wanted["saf_node_ip"], "gcs_address": wanted["gcs_address"], "head": wanted["head"]}
    differs = {k: f"record {seen[k]!r}, inventory {want[k]!r}" for k in want if seen[k] != want[k]}
    assert differs == {}, f"{name}: the start record differs from the inventory: {differs}"


# --- Ray's processes ------------------------------------------------------------------------------

def ray_arguments(wanted, program) -> list:
    """The flags, in Ray's own spelling, that roles/ray_node/tasks/command_line.yml's `ray start` passes on."""
    if program == "gcs_server":
        return [f"--node-ip-address={wanted['saf_node_ip']}", f"--gcs_server_port={wanted['saf_ray_gcs_port']}",
                f"--metrics-agent-port={wanted['saf_ray_dashboard_agent_grpc_port']}"]
    return [f"--node_ip_address={wanted['saf_node_ip']}", f"--gcs-address={wanted['gcs_address']}",
            f"--node_manager_port={wanted['saf_ray_node_manager_port']}",
            f"--object_manager_port={wanted['saf_ray_object_manager_port']}",
            f"--min_worker_port={wanted['saf_ray_min_worker_port']}",
            f"--max_worker_port={wanted['saf_ray_max_worker_port']}",
            f"--runtime_env_agent_port={wanted['saf_ray_runtime_env_agent_port']}",
            f"--metrics_export_port={wanted['saf_ray_metrics_export_port']}",
            f"--metrics-agent-port={wanted['saf_ray_dashboard_agent_grpc_port']}",
            f"--temp_dir={wanted['saf_ray_temp_dir']}"]


def the_process(name, ray_procs, program):
    found = [p for p in ray_procs if p.program == program]
    assert len(found) == 1, f"{name}: {len(found)} {program} processes of this cluster (if Ray is restarting, retry in 30 s)"
    return found[0]


@pytest.mark.ray
@pytest.mark.parametrize("program", ["raylet", "gcs_server"])
def test_ray_runs_as_the_intended_user_with_the_intended_arguments(name, wanted, ray_procs, ray_uid, program):
    """Exactly one raylet (every node) and one gcs_server (head node) of this cluster run as the
    Ray user (saf_ray_user if the inventory sets it, else the SSH user: the launchd/systemd job's
    account, or the account `ray start` runs as in the lab) with the inventory's address and ports."""
    if program == "gcs_server" and not wanted["head"]:
        pytest.skip(f"{name} is a worker node: the GCS runs on the head node only")
    proc = the_process(name, ray_procs, program)
    assert proc.uid == ray_uid, f"{name}: {program} runs as uid {proc.uid}, not {wanted['ray_user']} ({ray_uid})"
    args = proc.args.split()
    missing = [flag for flag in ray_arguments(wanted, program) if flag not in args]
    assert missing == [], f"{name}: {program} (pid {proc.pid}) lacks {missing}"


def raylet_environment(name, ray_procs, environ_of) -> list:
    """The raylet's environment, proven read: SAF starts Ray with a PATH (roles/ray_node), so an
    environment without one was not read (macOS ``ps -E`` prints none, silently, for another user's
    process) and a check that a variable is absent would pass on nothing."""
    proc = the_process(name, ray_procs, "raylet")
    env = environ_of(proc.pid)
    assert any(v.startswith("PATH=") for v in env), \
        f"{name}: cannot read the raylet's environment (pid {proc.pid}): run testinfra as Ray's user or with --sudo"
    return env


@pytest.mark.ray
def test_ray_start_ran_with_the_macos_cluster_switch(name, ray_procs, environ_of):
    """RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 is in the raylet's environment: Ray refuses a multi-node
    cluster on macOS without it (it changes nothing on Linux, so look at what ran)."""
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1" in raylet_environment(name, ray_procs, environ_of), name


@pytest.mark.ray
def test_rays_version_check_is_not_switched_off(name, ray_procs, environ_of):
    """Parity is the fix: Ray's own check of Python and Ray versions stays on (README, Security)."""
    switch = "RAY_IGNORE_" + "VERSION_MISMATCH"
    env = raylet_environment(name, ray_procs, environ_of)
    assert [v for v in env if v.startswith(switch + "=")] == [], name


# --- Listening sockets ----------------------------------------------------------------------------

@pytest.mark.ray
@pytest.mark.parametrize("port_var", list(PORTS))
def test_each_configured_port_listens_where_ray_binds_it(name, wanted, listeners, port_var):
    """Each port of roles/saf/defaults/main.yml (as the inventory sets it) listens on its node,
    on exactly the addresses Ray binds it to (see PORTS)."""
    where, binds = PORTS[port_var]
    if where == HEAD and not wanted["head"]:
        pytest.skip(f"{name} is a worker node: {port_var} is the head node's")
    port = wanted[port_var]
    seen = {s.address for s in listeners if s.port == port}
    want = wanted_addresses(wanted, binds)
    assert seen == want, f"{name}: {port_var} {port} listens on {sorted(seen) or 'nothing'}, not {sorted(want)}"


@pytest.mark.ray
def test_the_dashboard_is_on_loopback_only(name, wanted, listeners):
    """Ray has no authentication and the dashboard's Jobs API runs code: whatever the inventory
    says, the dashboard listens on loopback addresses only (README, Security)."""
    if not wanted["head"]:
        pytest.skip(f"{name} is a worker node: the dashboard runs on the head node only")
    seen = {s.address for s in listeners if s.port == wanted["saf_ray_dashboard_port"]}
    assert seen and all(a != ALL and ipaddress.ip_address(a).is_loopback for a in seen), \
        f"{name}: the dashboard ({wanted['saf_ray_dashboard_port']}) listens on {sorted(seen) or 'nothing'}"


@pytest.mark.ray
def test_no_ray_process_listens_outside_the_configured_ports(name, wanted, ray_procs, listeners):
    """No process of this cluster (see conftest.cluster_processes) listens on a TCP port other than
    the configured ones and the worker range saf_ray_min_worker_port..saf_ray_max_worker_port: the
    firewall (roles/cluster_firewall) guards exactly those and leaves other ports alone, so a stray
    Ray port is open to anyone. A ray:// client shows up here: the Ray Client proxy starts a server
    for it on 23000-23999 (ray/util/client/server/proxier.py)."""
    pids = {p.pid for p in ray_procs}
    ours = [s for s in listeners if s.pids & pids]
    raylet = the_process(name, ray_procs, "raylet")
    assert any(raylet.pid in s.pids for s in ours), f"{name}: no socket seen for the raylet: can the SSH user see Ray's processes?"
    workers = range(wanted["saf_ray_min_worker_port"], wanted["saf_ray_max_worker_port"] + 1)
    stray = [f"{s.address}:{s.port} (pid {sorted(s.pids & pids)})" for s in ours
             if s.port not in node_ports(wanted) and s.port not in workers]
    assert stray == [], f"{name}: Ray listens outside the configured ports: {stray}"


# --- Resource limits ------------------------------------------------------------------------------

def supervised_start(ray_procs, proc):
    """The `ray start ... --block` process ``proc`` descends from: what launchd and systemd run
    (roles/ray_node/tasks/*-definition.yml). None when Ray was started directly: that `ray start`
    has no --block and exits once the node is up, so the raylet has no such ancestor."""
    by_pid = {p.pid: p for p in ray_procs}
    parent, seen = by_pid.get(proc.ppid), set()
    while parent is not None and parent.pid not in seen:
        args = parent.args.split()
        if "start" in args and "--block" in args:
            return parent
        seen.add(parent.pid)
        parent = by_pid.get(parent.ppid)
    return None


def open_files_limits(host, pid) -> tuple:
    """(soft, hard) "Max open files" of a Linux process, from /proc/<pid>/limits (readable by all)."""
    line = next(line for line in host.file(f"/proc/{pid}/limits").content_string.splitlines()
                if line.startswith("Max open files"))
    return tuple(float("inf") if value == "unlimited" else int(value) for value in line.split()[3:5])


@pytest.mark.ray
def test_ray_may_open_as_many_files_as_the_setting(host, name, wanted, ray_procs):
    """Under launchd or systemd the raylet's open-files limit is at least saf_ray_open_files_limit:
    launchd's own default soft limit is 256, far below what Ray needs (ray-project/ray#14507, #10585).

    Linux (systemd; also the lab's launchd test double): the raylet's soft limit in
    /proc/<pid>/limits. macOS cannot read another process's limits from outside (no /proc, no
    prlimit; `launchctl limit maxfiles` is launchd's default for jobs, not this job's), so there the
    spec checks what launchd applies when it spawns the job: the raylet descends from the process
    `launchctl print system/<label>` names, launchd loaded that job from saf_launchd_dir's plist, and
    the plist's SoftResourceLimits and HardResourceLimits NumberOfFiles are at least the setting.
    Started directly (saf_ray_service_manager: direct, the lab), nothing applies the setting: skipped."""
    limit = int(wanted["saf_ray_open_files_limit"])
    raylet = the_process(name, ray_procs, "raylet")
    start = supervised_start(ray_procs, raylet)
    manager = wanted.get("saf_ray_service_manager")
    if start is None:
        assert manager not in ("launchd", "systemd"), \
            f"{name}: the inventory runs Ray under {manager}, but the raylet (pid {raylet.pid}) descends from no `ray start --block`"
        pytest.skip(f"{name}: Ray was started directly (`ray start` over SSH, saf_ray_service_manager: direct), "
                    "not under launchd or systemd: nothing applies saf_ray_open_files_limit")
    if host.system_info.type != "darwin":
        soft, hard = open_files_limits(host, raylet.pid)
        assert soft >= limit, f"{name}: the raylet (pid {raylet.pid}) may open {soft} files (hard limit {hard}), " \
                              f"fewer than saf_ray_open_files_limit {limit}"
        return
    label = wanted["saf_ray_launchd_label"]
    plist = f"{wanted['saf_launchd_dir']}/{label}.plist"
    job = host.run(f"{shlex.quote(wanted['saf_launchctl'])} print system/{shlex.quote(label)}")
    assert job.rc == 0, f"{name}: `launchctl print system/{label}` exited {job.rc}: {job.stderr.strip()} (run with --sudo?)"
    assert f"pid = {start.pid}" in job.stdout, \
        f"{name}: the raylet descends from pid {start.pid}, which is not the process launchd runs for {label}"
    assert f"path = {plist}" in job.stdout, f"{name}: launchd did not load {label} from {plist}"
    definition = json.loads(host.check_output(f"plutil -convert json -o - {shlex.quote(plist)}"))
    limits = {key: definition.get(key, {}).get("NumberOfFiles") for key in ("SoftResourceLimits", "HardResourceLimits")}
    short = {key: value for key, value in limits.items() if not isinstance(value, int) or value < limit}
    assert short == {}, f"{name}: {plist} sets NumberOfFiles {short}, below saf_ray_open_files_limit {limit}"
