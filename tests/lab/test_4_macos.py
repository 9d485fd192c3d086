"""The macOS branch of every role, walked on a lab host whose OS facts are forced to Darwin.

BETA is marked (``/opt/saf/macos/FORCE_DARWIN_FACTS``), so the facts double reports it as a Mac
Studio, and ``tests/lab/macos/overrides.yml`` re-roots a Mac's fixed paths under BETA's private
``/opt/saf/macos``. There the test doubles of ``tests/doubles/bin`` stand in for brew, pyenv, uv,
launchctl (with a small launchd), pmset and the Tailscale CLI: site.yml installs Python with brew
run as the prefix's owner (``nobody``: the brew double refuses root as brew does), builds it with
pyenv, writes the LaunchDaemon plist and runs Ray under the launchd double, with a Metal check
first, sets the power settings and checks the Tailscale network. ALPHA stays a Linux head node.
"""

from __future__ import annotations

import json
import plistlib
import re
import shlex
import time

import pytest

from labkit import LAB_PYTHON, REPO, lab_exec, lab_host, raylet_running, read_report, run_playbook
from macos_doubles import (BREW, DOUBLES, MAC, install_mac_tree, reboot_mac, remove_mac_tree, sh,
                           simulate_macos_update, tailscale_status, wait_until, write_json)

EXTRA = ["-e", "@tests/lab/macos/overrides.yml"]
ENV = {"ANSIBLE_LIBRARY": f"{REPO / 'library'}:{DOUBLES / 'modules'}"}
LAB_IPS = {"ALPHA": "198.18.0.11", "BETA": "198.18.0.12"}
PLIST = f"{MAC}/Library/LaunchDaemons/org.saf.ray.plist"


def read_file(host: str, path: str) -> str:
    return sh(host, f"cat {shlex.quote(path)}")


@pytest.fixture(scope="module")
def mac_lab(lab):
    """BETA forced to macOS, ALPHA Linux with a Tailscale CLI; removed again afterwards."""
    for host in LAB_IPS:
        install_mac_tree(host, darwin=host == "BETA", peers=LAB_IPS)
    yield
    # Unload the Ray LaunchDaemon (or its supervisor would start Ray again), then the plain lab.
    run = run_playbook("playbooks/reset.yml", *EXTRA, env=ENV)
    for host in LAB_IPS:
        remove_mac_tree(host)
    assert run.returncode == 0, str(run)
    restored = run_playbook("site.yml")
    assert restored.returncode == 0, f"site.yml did not restore the Linux lab:\n{restored}"


@pytest.fixture(scope="module")
def mac_site(mac_lab):
    """The first site.yml run with BETA as a Mac."""
    run = run_playbook("site.yml", *EXTRA, env=ENV)
    assert run.returncode == 0, str(run)
    return run


def test_site_walks_the_macos_branch(mac_site):
    out = mac_site.output
    # Homebrew ran as the owner of its prefix and installed pyenv and the build libraries.
    brew = json.loads(read_file("BETA", f"{BREW}/bin/fake-brew.json"))
    assert sorted(brew["installed"]) == ["openssl@3", "pyenv", "readline", "xz", "zlib"]
    assert lab_host("BETA").file(f"{BREW}/Cellar/pyenv").user == "nobody"
    # pyenv built the pinned release where the macOS default interpreter path points.
    python = f"{MAC}/Users/saf/.pyenv/versions/{LAB_PYTHON['version']}/bin/python3"
    assert sh("BETA", f"{python} -c 'import platform; print(platform.python_version())'").strip() == LAB_PYTHON["version"]
    # The Metal check ran as a launchd job before Ray started.
    assert re.search(r"BETA: MLX computes on ok Device\(cpu, 0\) in the launchd context of the Ray job", out), out
    assert "TASK [power_settings" in out and "TASK [tailscale_network" in out


def test_plist_runs_ray_under_launchd(mac_site):
    job = plistlib.loads(read_file("BETA", PLIST).encode())
    # Ray starts through SAF's pf script, once pf holds SAF's rules in this boot (issue 17).
    assert job["ProgramArguments"][:2] == [f"{MAC}/Library/Application Support/SAF/saf-pf", "exec"]
    args = job["ProgramArguments"][2:]
    assert job["Label"] == "org.saf.ray"
    assert args[0] == "/opt/saf/venv/bin/ray" and args[1] == "start" and args[-1] == "--block"
    assert "--address=198.18.0.11:6380" in args and "--node-ip-address=198.18.0.12" in args
    assert job["EnvironmentVariables"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
    assert job["EnvironmentVariables"]["PATH"].startswith("/opt/saf/venv/bin:")
    assert job["KeepAlive"] is True and job["RunAtLoad"] is True
    assert job["StandardOutPath"] == "/opt/saf/log/ray.out"
    assert "UserName" not in job  # the lab connects as root; launchd then runs the job as root
    # launchd (the double) runs it, and the raylet is a descendant of that job.
    status = sh("BETA", f"{MAC}/bin/launchctl print system/org.saf.ray")
    assert "state = running" in status
    job_pid = int(re.search(r"pid = (\d+)", status).group(1))
    raylet = lab_host("BETA").process.get(comm="raylet")
    ancestors = sh("BETA", f"p={raylet.pid}; while [ $p -gt 1 ]; do echo $p; p=$(ps -o ppid= -p $p | tr -d ' '); done")
    assert str(job_pid) in ancestors.split(), (job_pid, ancestors)


def test_pf_anchor_loaded(mac_site):
    """The anchor is in pf.conf, loaded into (the double's) pf, and pf is enabled."""
    conf = read_file("BETA", f"{MAC}/etc/pf.conf")
    assert 'anchor "org.saf.ray"' in conf and 'load anchor "org.saf.ray"' in conf
    assert 'anchor "com.apple/*"' in conf  # Apple's own lines are left alone
    rules = sh("BETA", f"{MAC}/sbin/pfctl -a org.saf.ray -s rules").splitlines()
    assert rules[-1].startswith("block drop in quick proto tcp from any to any port {")
    assert "from { 198.18.0.11, 198.18.0.12 }" in rules[1] and "11000:11999" in rules[1]
    assert sh("BETA", f"{MAC}/sbin/pfctl -s info").strip() == "Status: Enabled"


def test_pf_comes_back_from_safs_own_boot_job(mac_site):
    """Issue 17 (a, b): the same rules in com.apple/org.saf.ray, which Apple's own pf.conf evaluates,
    and the LaunchDaemon that loads them and enables pf at every boot (the tests at the end of this module restart BETA)."""
    rules = sh("BETA", f"{MAC}/sbin/pfctl -a com.apple/org.saf.ray -s rules").splitlines()
    assert rules == sh("BETA", f"{MAC}/sbin/pfctl -a org.saf.ray -s rules").splitlines() and rules
    job = plistlib.loads(read_file("BETA", f"{MAC}/Library/LaunchDaemons/org.saf.pf.plist").encode())
    assert job["ProgramArguments"] == [f"{MAC}/Library/Application Support/SAF/saf-pf", "load"] and job["RunAtLoad"]
    assert read_file("BETA", f"{MAC}/var/run/org.saf.pf.ready").startswith("boot ")


def test_unattended_restart_checks_on_a_new_mac(mac_site):
    """Issue 17 (c-f) on a Mac as it comes (tests/lab/macos_doubles.py): FileVault off passes, the
    Application Firewall off is left alone, updates that install nothing by themselves get no word,
    and the Tailscale app (no tailscaled LaunchDaemon) is named with the system daemon variant."""
    out = " ".join(mac_site.output.split())
    assert "BETA: FileVault is on" not in out and "BETA: macOS may install updates by itself" not in out
    assert "TASK [cluster_firewall : Read the Application Firewall's state and the programs it lists]" in mac_site.output
    assert "BETA: Tailscale runs here as the Tailscale app" in out and "system daemon variant, tailscaled" in out


def test_power_settings_applied(mac_site):
    custom = sh("BETA", f"{MAC}/usr/bin/pmset -g custom")
    assert re.search(r"^\s*sleep\s+0\s*$", custom, re.M), custom
    assert re.search(r"^\s*disksleep\s+0\s*$", custom, re.M), custom


def test_gpu_wired_limit_applied_now_and_at_boot(mac_site):
    assert sh("BETA", f"{MAC}/usr/sbin/sysctl -n iogpu.wired_limit_mb").strip() == "81920"
    job = plistlib.loads(read_file("BETA", f"{MAC}/Library/LaunchDaemons/org.saf.gpu-wired-limit.plist").encode())
    assert job["ProgramArguments"] == [f"{MAC}/usr/sbin/sysctl", "iogpu.wired_limit_mb=81920"] and job["RunAtLoad"]
    assert "BETA: the GPU may wire 81920 MiB" in " ".join(mac_site.output.split())


def test_tailscale_latency_reported(mac_site):
    # Both nodes checked their peer over the (double's) tailnet and reported a latency.
    assert re.search(r"BETA\s.*198\.18\.0\.11\s.*direct", mac_site.output), mac_site.output


def test_verify_passes_with_a_macos_worker(mac_site):
    run = run_playbook("verify.yml", *EXTRA, env=ENV)
    assert run.returncode == 0, str(run)
    report = json.loads((REPO / "reports" / "verify.json").read_text())
    assert [(w["executed_on"], w["verdict"]) for w in report["workers"]] == [("BETA.local", "PASS")]


def test_second_run_changes_nothing(mac_site):
    before = lab_host("BETA").process.get(comm="raylet").pid
    run = run_playbook("site.yml", *EXTRA, env=ENV)
    assert run.returncode == 0, str(run)
    assert run.recap["BETA"]["changed"] == 0, str(run)
    assert lab_host("BETA").process.get(comm="raylet").pid == before


def test_plist_change_restarts_ray_with_proof(mac_site):
    before = lab_host("BETA").process.get(comm="raylet").pid
    run = run_playbook("site.yml", *EXTRA, "-e", "saf_ray_object_store_memory=300000000", "--limit", "ALPHA,BETA",
                       env=ENV)
    assert run.returncode == 0, str(run)
    job = plistlib.loads(read_file("BETA", PLIST).encode())
    assert "--object-store-memory=300000000" in job["ProgramArguments"]
    assert lab_host("BETA").process.get(comm="raylet").pid != before
    assert "Check a new raylet runs" in run.output


# Install and check scenarios on BETA alone (the roles by themselves, not the whole site.yml).
# --- launchd's rough edges (tests/doubles/bin/launchctl's settings file): a label lingering after
# bootout, bootout exiting 36, disabled labels, a plist launchd refuses.

SETTINGS = f"{MAC}/bin/fake-launchctl.json"
LAUNCHCTL = f"{MAC}/bin/launchctl"


def raylet_open_files(host: str) -> tuple:
    pid = lab_host(host).process.get(comm="raylet").pid
    line = next(line for line in read_file(host, f"/proc/{pid}/limits").splitlines() if line.startswith("Max open files"))
    return pid, tuple(int(v) for v in line.split()[3:5])


def test_the_raylet_under_launchd_gets_the_open_files_limit(mac_site):
    # tests/lab/macos/overrides.yml sets 16384: the lab cannot grant the 65536 default (see there).
    _, limits = raylet_open_files("BETA")
    assert limits == (16384, 16384)
    job = plistlib.loads(read_file("BETA", PLIST).encode())
    assert job["SoftResourceLimits"] == job["HardResourceLimits"] == {"NumberOfFiles": 16384}


def test_a_restart_rides_out_linger_exit_36_and_disabled_labels(mac_site):
    """A plist change restarts Ray while the double lingers 3 s after each bootout, answers 36 to
    bootout and keeps both labels (Ray's and the Metal check's) disabled."""
    before, _ = raylet_open_files("BETA")
    write_json("BETA", SETTINGS, {"linger_seconds": 3, "bootout_exit": 36,
                                  "disabled": ["org.saf.ray", "org.saf.ray.metal-check"]})
    try:
        run = run_playbook("site.yml", *EXTRA, "-e", "saf_ray_open_files_limit=12288", env=ENV)
    finally:
        write_json("BETA", SETTINGS, {})
    assert run.returncode == 0, str(run)
    assert "RETRYING: [BETA]: Wait until launchd has forgotten the job" in run.output, str(run)
    after, limits = raylet_open_files("BETA")
    assert after != before and limits == (12288, 12288)
    assert "=> disabled" not in sh("BETA", f"{LAUNCHCTL} print-disabled system")


def test_a_plist_launchd_refuses_gives_way_to_the_one_it_replaced(mac_site):
    """A harness in front of the double refuses plists asking for --num-cpus=3 (exit 5). site.yml
    fails naming BETA, the label and the exit code, and BETA runs its previous definition again."""
    # The harness is another saf_launchctl: the double stays where its state and jobs are.
    harness = f"{MAC}/harness/launchctl"
    sh("BETA", f"mkdir -p {MAC}/harness && printf '%s\\n' '#!/bin/sh' "
               f"'[ \"$1\" = bootstrap ] && grep -q -- --num-cpus=3 \"$3\" && {{ echo \"Bootstrap failed: 5: Input/output error\" >&2; exit 5; }}' "
               f"'exec {LAUNCHCTL} \"$@\"' > {harness} && chmod 0755 {harness}")
    run = run_playbook("site.yml", *EXTRA, "-e", "saf_ray_num_cpus=3", "-e", "saf_launchd_unload_timeout=5",
                       "-e", f"saf_launchctl={harness}", env=ENV)
    assert run.returncode != 0, str(run)
    message = " ".join(run.output.split())
    assert re.search(r"BETA: launchd refused org\.saf\.ray: `launchctl bootstrap system \S+` exited 5", message), str(run)
    assert "The previous definition is running again" in message, str(run)
    status = sh("BETA", f"{LAUNCHCTL} print system/org.saf.ray")
    assert "state = running" in status and "--num-cpus=3" not in status
    # Needs restart.yml's rescue to keep a restored definition (it deletes the plist otherwise).
    assert "--num-cpus=3" not in read_file("BETA", PLIST)


ONLY_BETA = [*EXTRA, "--limit", "BETA"]


def fresh_beta() -> None:
    install_mac_tree("BETA", darwin=True, peers=LAB_IPS)


def test_pyenv_build_without_lzma_fails_naming_it(mac_site):
    fresh_beta()
    write_json("BETA", f"{BREW}/bin/fake-pyenv.json",
               {"builds": {LAB_PYTHON["version"]: LAB_PYTHON["prefix"]}, "missing_libraries": ["xz"]})
    run = run_playbook("tests/lab/macos/python_runtime.yml", *ONLY_BETA, env=ENV)
    assert run.returncode != 0, str(run)
    assert re.search(rf"BETA: \S+/\.pyenv/versions/{re.escape(LAB_PYTHON['version'])}/bin/python3 cannot import\s+lzma", run.output), str(run)


def test_existing_interpreter_reports_unchanged(mac_site):
    fresh_beta()
    first = run_playbook("tests/lab/macos/python_runtime.yml", *ONLY_BETA, env=ENV)
    assert first.returncode == 0 and first.recap["BETA"]["changed"] > 0, str(first)
    second = run_playbook("tests/lab/macos/python_runtime.yml", *ONLY_BETA, env=ENV)
    assert second.returncode == 0 and second.recap["BETA"]["changed"] == 0, str(second)


def test_homebrew_runs_as_its_owner_when_the_play_uses_become(mac_site):
    """With --become every task runs as root unless told otherwise; brew (which refuses root)
    still runs as the prefix's owner."""
    fresh_beta()
    run = run_playbook("tests/lab/macos/python_runtime.yml", *ONLY_BETA, "--become", env=ENV)
    assert run.returncode == 0, str(run)
    brew = json.loads(read_file("BETA", f"{BREW}/bin/fake-brew.json"))
    assert sorted(brew["installed"]) == ["openssl@3", "pyenv", "readline", "xz", "zlib"]


def test_uv_installer(mac_site):
    fresh_beta()
    python = f"{MAC}/Users/saf/.local/share/uv/python/cpython-{LAB_PYTHON['version']}-macos-aarch64-none/bin/python3"
    run = run_playbook("tests/lab/macos/python_runtime.yml", *ONLY_BETA, "-e", "saf_python_installer=uv",
                       "-e", f"saf_python_interpreter={python}", env=ENV)
    assert run.returncode == 0, str(run)
    brew = json.loads(read_file("BETA", f"{BREW}/bin/fake-brew.json"))
    assert sorted(brew["installed"]) == ["uv"]
    assert sh("BETA", f"{python} -c 'import lzma, ssl; print(1)'").strip() == "1"


def test_homebrew_owned_by_root_is_refused(mac_site):
    fresh_beta()
    sh("BETA", f"chown -R root:root {BREW}")
    run = run_playbook("tests/lab/macos/python_runtime.yml", *ONLY_BETA, env=ENV)
    assert run.returncode != 0, str(run)
    assert "brew is owned by root; Homebrew refuses to run as root" in run.output, str(run)


def test_metal_check_fails_without_a_gpu(mac_site):
    """The lab's MLX has no GPU backend: asking for the GPU must fail the play naming the host."""
    run = run_playbook("tests/lab/macos/metal_check.yml", *ONLY_BETA, "-e", "saf_metal_check_device=gpu", env=ENV)
    assert run.returncode != 0, str(run)
    assert "no usable Metal device on BETA" in run.output, str(run)
    assert "last exit code = 1" in run.output, str(run)
    # The check is unloaded again: no job of it is left in launchd.
    assert lab_exec("BETA", f"{MAC}/bin/launchctl", "print", "system/org.saf.ray.metal-check").returncode == 113


STATUS = f"{MAC}/Applications/Tailscale.app/Contents/MacOS/fake-tailscale.json"


@pytest.mark.parametrize("name, prepare, rc, expected", [
    ("peer offline", lambda: [write_json(h, STATUS, {"status": tailscale_status(h, LAB_IPS, offline=("BETA",))})
                              for h in ("ALPHA",)], 2, r"inventory host BETA\) is offline"),
    ("peer absent", lambda: write_json("ALPHA", STATUS, {"status": tailscale_status("ALPHA", {"ALPHA": LAB_IPS["ALPHA"]})}),
     2, r"inventory host BETA\) is not in this tailnet"),
    ("relay only", lambda: [write_json(h, STATUS, {"status": tailscale_status(h, LAB_IPS),
                                                   "ping": {ip: {"path": "relay"} for ip in LAB_IPS.values()}})
                            for h in LAB_IPS], 0, r"ALPHA\s+BETA\s+198\.18\.0\.12\s+relay"),
    ("CLI missing", lambda: sh("BETA", f"rm -rf {MAC}/Applications/Tailscale.app"), 2,
     r"(?s)fatal: \[BETA\].*no Tailscale CLI found; searched"),
])
def test_tailscale_scenarios(mac_site, name, prepare, rc, expected):
    for host in LAB_IPS:
        install_mac_tree(host, darwin=host == "BETA", peers=LAB_IPS)
    prepare()
    run = run_playbook("tests/lab/macos/network.yml", *EXTRA, env=ENV)
    assert (run.returncode == 0) == (rc == 0), f"{name}:\n{run}"
    assert re.search(expected, run.output), f"{name}: no match for {expected!r}\n{run}"


def test_tailscale_cli_only_in_the_app_bundle(mac_site):
    """Not on PATH, not in Homebrew: found in the app bundle and called by its full path."""
    for host in LAB_IPS:
        install_mac_tree(host, darwin=host == "BETA", peers=LAB_IPS)
    run = run_playbook("tests/lab/macos/network.yml", *EXTRA, "-v", env=ENV)
    assert run.returncode == 0, str(run)
    calls = read_file("BETA", f"{MAC}/Applications/Tailscale.app/Contents/MacOS/fake-tailscale-calls.jsonl")
    assert ["status", "--json"] in [json.loads(line) for line in calls.splitlines()]
    assert "Tailscale.app/Contents/MacOS/Tailscale" in run.output and "app_bundle" in run.output


# --- A Mac comes back by itself (issue 17). Last in this module: they restart BETA. --------------
# BETA is restarted (and then updated and restarted) without site.yml, and pf, Ray and verify.yml
# come back. "Restart" (macos_doubles.reboot_mac): every process of BETA's Mac tree is killed (the
# launchd double's supervisors and Ray), pf is disabled and empty, launchd forgets its jobs and the
# ready file of the previous boot goes; then, as launchd does at boot, the RunAtLoad jobs are
# loaded: Apple's com.apple.pfctl (loads pf.conf, leaves pf disabled: SelfControlApp/selfcontrol#815,
# Homebrew/legacy-homebrew#42599), SAF's org.saf.pf, Ray's org.saf.ray. "Update"
# (macos_doubles.simulate_macos_update): Apple's default /etc/pf.conf, without site.yml's lines
# (tuist/tuist#11425). ALPHA, the Linux head, keeps running; BETA's Ray joins it under a new node ID.

PFCTL = f"{MAC}/sbin/pfctl"
STEPS = "tests/unit/playbooks/macos_steps.yml"
FIREWALL_VERIFY = json.dumps({"macos_steps": [{"role": "cluster_firewall", "tasks": "verify.yml"}]})
BOOT_JOBS = ["com.apple.pfctl", "org.saf.pf", "org.saf.ray"]


@pytest.fixture(scope="module")
def first_node_id(mac_site):
    """site.yml (undoing what the tests above changed) and verify.yml with BETA as a Mac; BETA's
    node ID before any restart."""
    site = run_playbook("site.yml", *EXTRA, env=ENV)
    assert site.returncode == 0, str(site)
    verify = run_playbook("verify.yml", *EXTRA, env=ENV)
    assert verify.returncode == 0, str(verify)
    return read_report()["workers"][0]["node_id"]


def pf_ready() -> bool:
    """pf on BETA: enabled, SAF's rules in com.apple/org.saf.ray, and the main ruleset evaluating them."""
    info = sh("BETA", f"{PFCTL} -s info").strip()
    main = sh("BETA", f"{PFCTL} -s rules")
    anchor = sh("BETA", f"{PFCTL} -a com.apple/org.saf.ray -s rules")
    return info == "Status: Enabled" and 'anchor "com.apple/*"' in main and "block drop in quick" in anchor


def ray_job_state() -> str:
    """What launchd (the double) says of Ray's job on BETA, and the tails of its log and pf's."""
    return sh("BETA", f"""
        {MAC}/bin/launchctl print system/org.saf.ray 2>&1; echo '--- ray.err'; tail -n 30 /opt/saf/log/ray.err 2>&1
        echo '--- org.saf.pf.log'; tail -n 10 {MAC}/var/log/org.saf.pf.log 2>&1""")


def comes_back(before: str) -> str:
    """Restart BETA; show pf and Ray back and verify.yml passing, without site.yml. Returns the new node ID."""
    started = reboot_mac("BETA")
    assert [label for label in started if label in BOOT_JOBS] == BOOT_JOBS, started
    wait_until("pf enabled with SAF's rules on BETA", pf_ready, timeout=90)
    try:
        wait_until("a raylet on BETA", lambda: raylet_running("BETA"), timeout=240, interval=3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{ray_job_state()}") from None

    # The worker registers with the head's GCS a few seconds after its raylet starts: one more try.
    verify = run_playbook("verify.yml", *EXTRA, env=ENV)
    if verify.returncode != 0:
        time.sleep(15)
        verify = run_playbook("verify.yml", *EXTRA, env=ENV)
    assert verify.returncode == 0, str(verify)
    (beta,) = read_report()["workers"]
    assert beta["executed_on"] == "BETA.local" and beta["passed"], beta
    assert beta["node_id"] != before, "Ray on BETA started again, under a new node ID"

    steps = run_playbook(STEPS, *EXTRA, "--limit", "BETA", "-e", FIREWALL_VERIFY, env=ENV)
    assert steps.returncode == 0, str(steps)
    assert "in this boot, and org.saf.pf loads them again at every boot" in " ".join(steps.output.split()), str(steps)
    return beta["node_id"]


@pytest.fixture(scope="module")
def after_restart(first_node_id):
    return comes_back(first_node_id)


def test_a_restart_brings_back_pf_ray_and_verify(after_restart):
    job = plistlib.loads(sh("BETA", f"cat {MAC}/Library/LaunchDaemons/org.saf.pf.plist").encode())
    assert job["RunAtLoad"] is True and job["ProgramArguments"][-1] == "load"
    assert 'anchor "org.saf.ray"' in sh("BETA", f"cat {MAC}/etc/pf.conf"), "no update yet: site.yml's lines are there"


@pytest.fixture(scope="module")
def after_update(after_restart):
    simulate_macos_update("BETA")
    return comes_back(after_restart)


def test_after_an_update_pf_holds_without_the_pf_conf_lines(after_update):
    conf = sh("BETA", f"cat {MAC}/etc/pf.conf")
    assert "org.saf.ray" not in conf and 'anchor "com.apple/*"' in conf, conf
    # The anchor pf.conf used to load is gone; the one Apple's pf.conf evaluates holds SAF's rules.
    assert sh("BETA", f"{PFCTL} -a org.saf.ray -s rules").strip() == ""
    assert pf_ready()


def test_site_yml_then_restores_the_pf_conf_lines_and_leaves_ray_running(after_update):
    before = sh("BETA", "pgrep -x raylet").split()
    site = run_playbook("site.yml", *EXTRA, env=ENV)
    assert site.returncode == 0, str(site)
    assert 'anchor "org.saf.ray"' in sh("BETA", f"cat {MAC}/etc/pf.conf")
    assert site.recap["BETA"]["changed"] == 2, "the pf.conf lines and loading pf.conf, nothing else:\n" + str(site)
    assert sh("BETA", "pgrep -x raylet").split() == before
