"""The Ray service definitions ray_node writes, rendered by the role itself and then parsed.

tests/unit/playbooks/render_service.yml runs the role's own tasks (command_line.yml, then
launchd-definition.yml or systemd-definition.yml) for a head and a worker over a local
connection, writing into a temporary directory. The plist is read back with plistlib, the format
launchd reads; the unit is checked with ``systemd-analyze verify``, systemd's own parser.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def render(tmp_path: Path, manager: str, facts_os: str = "", **extra) -> Path:
    """Render ``manager``'s definitions for a head and a worker; returns the output directory.
    ``facts_os`` makes the facts say that OS (tests/unit/playbooks/library/saf_test_os_facts.py)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    ray = venv / "bin" / "ray"
    ray.write_text("#!/bin/sh\n")  # systemd-analyze verify checks that ExecStart's program exists
    ray.chmod(0o755)
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "saf_venv_dir": str(venv), "saf_root_dir": str(tmp_path / "saf"),
              "saf_ray_service_manager": manager, "saf_ray_user": "root", **extra}
    if facts_os:
        common.update(ansible_facts_modules=["ansible.builtin.setup", "saf_test_os_facts"], ansible_facts_parallel=False)
    inventory = {"saf_cluster": {"children": {
        "ray_head": {"hosts": {"HEAD": {"saf_node_ip": "198.18.0.11", **common}}},
        "ray_workers": {"hosts": {"WORKER": {"saf_node_ip": "198.18.0.12", **common}}},
    }}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), "-e", f"out_dir={out}",
         str(REPO / "tests" / "unit" / "playbooks" / "render_service.yml")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", SAF_TEST_OS=facts_os,
                 ANSIBLE_LIBRARY=f"{REPO / 'library'}{os.pathsep}{REPO / 'tests' / 'unit' / 'playbooks' / 'library'}"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def plists(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("launchd")
    out = render(tmp, "launchd", saf_ray_num_cpus=4)
    return {host: plistlib.loads((out / host / "org.saf.ray.plist").read_bytes()) for host in ("HEAD", "WORKER")}, tmp


def test_plist_runs_ray_start_block(plists):
    jobs, tmp = plists
    head, worker = jobs["HEAD"]["ProgramArguments"], jobs["WORKER"]["ProgramArguments"]
    assert head[:3] == [f"{tmp}/venv/bin/ray", "start", "--head"] and head[-1] == "--block"
    assert "--port=6380" in head and "--node-ip-address=198.18.0.11" in head and "--num-cpus=4" in head
    assert worker[:2] == [f"{tmp}/venv/bin/ray", "start"] and worker[-1] == "--block"
    assert "--address=198.18.0.11:6380" in worker and "--head" not in worker


def test_plist_environment_and_supervision(plists):
    jobs, tmp = plists
    for job in jobs.values():
        assert job["Label"] == "org.saf.ray"
        assert job["EnvironmentVariables"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
        assert job["EnvironmentVariables"]["PATH"].split(":")[0] == f"{tmp}/venv/bin"
        # SAF's stub nvidia-smi last, behind every system directory (saf_ray_gpu_check_stub)
        assert job["EnvironmentVariables"]["PATH"].split(":")[-1] == f"{tmp}/saf/lib/gpu-check"
        assert job["KeepAlive"] is True and job["RunAtLoad"] is True
        assert job["StandardOutPath"].endswith("/log/ray.out") and job["StandardErrorPath"].endswith("/log/ray.err")
        assert job["WorkingDirectory"] == f"{tmp}/saf"
        assert "UserName" not in job  # root: launchd's default


def test_plist_raises_the_open_files_limit(plists):
    """launchd's default soft limit is 256 open files (ray-project/ray#14507, #10585): the plist sets
    soft and hard to saf_ray_open_files_limit (65536 by default), as integers, the type launchd reads."""
    jobs, _ = plists
    for job in jobs.values():
        assert job["SoftResourceLimits"] == {"NumberOfFiles": 65536}
        assert job["HardResourceLimits"] == {"NumberOfFiles": 65536}
        assert type(job["SoftResourceLimits"]["NumberOfFiles"]) is int


GIB = 2 ** 30


def test_a_mac_object_store_above_ray_s_2_gib_limit_sets_the_variable_ray_asks_for(tmp_path):
    """Ray 2.49.2 refuses an object store above 2 GiB on macOS unless RAY_ENABLE_MAC_LARGE_OBJECT_STORE=1
    (ray/_private/services.py, MAC_DEGRADED_PERF_MMAP_SIZE_LIMIT); 8 GiB on a Mac Studio sets it."""
    gate = tmp_path / "Application Support" / "saf-pf"
    gate.parent.mkdir()
    gate.write_text("#!/bin/sh\n")
    gate.chmod(0o755)
    out = render(tmp_path / "big", "launchd", facts_os="Darwin", saf_ray_object_store_memory=8 * GIB,
                 saf_pf_script=str(gate))
    job = plistlib.loads((out / "WORKER" / "org.saf.ray.plist").read_bytes())
    assert "--object-store-memory=%d" % (8 * GIB) in job["ProgramArguments"]
    assert job["EnvironmentVariables"]["RAY_ENABLE_MAC_LARGE_OBJECT_STORE"] == "1"
    # On a Mac, Ray starts through SAF's pf script, once pf holds SAF's rules in this boot (issue 17 a).
    assert job["ProgramArguments"][:4] == [str(gate), "exec", f"{tmp_path}/big/venv/bin/ray", "start"]
    small = render(tmp_path / "small", "launchd", facts_os="Darwin", saf_ray_object_store_memory=2 * GIB,
                   saf_firewall_enabled=False)
    # Without SAF's firewall there is nothing to wait for: `ray start` itself.
    assert plistlib.loads((small / "WORKER" / "org.saf.ray.plist").read_bytes())["ProgramArguments"][1] == "start"
    assert "RAY_ENABLE_MAC_LARGE_OBJECT_STORE" not in plistlib.loads(
        (small / "WORKER" / "org.saf.ray.plist").read_bytes())["EnvironmentVariables"]
    linux = render(tmp_path / "linux", "systemd", saf_ray_object_store_memory=8 * GIB)
    assert "RAY_ENABLE_MAC_LARGE_OBJECT_STORE" not in (linux / "WORKER" / "saf-ray.service").read_text()


def test_plist_names_the_ray_user(tmp_path):
    out = render(tmp_path, "launchd", saf_ray_user="operator")
    job = plistlib.loads((out / "WORKER" / "org.saf.ray.plist").read_bytes())
    assert job["UserName"] == "operator"


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("systemd")
    out = render(tmp, "systemd", saf_ray_temp_dir="/opt/saf/ray/100% $tmp", saf_ray_open_files_limit=100000)
    return {host: out / host / "saf-ray.service" for host in ("HEAD", "WORKER")}


def test_unit_execstart_round_trips(units):
    """The quoted ExecStart reads back (systemd's rules) as the argument list the role built."""
    text = units["HEAD"].read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert '"--temp-dir=/opt/saf/ray/100%% $$tmp"' in exec_start
    assert exec_start.endswith('"--block"')
    assert "Restart=always" in text and "User=root" in text
    assert 'Environment="RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1"' in text


def test_unit_sets_the_open_files_limit(units):
    """LimitNOFILE sets soft and hard to saf_ray_open_files_limit (here 100000; a unit's own soft default is 1024)."""
    for unit in units.values():
        limits = [line for line in unit.read_text().splitlines() if line.startswith("LimitNOFILE=")]
        assert limits == ["LimitNOFILE=100000"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("host", ["HEAD", "WORKER"])
def test_unit_passes_systemd_analyze_verify(units, host):
    proc = subprocess.run(["systemd-analyze", "verify", str(units[host])], capture_output=True, text=True,
                          timeout=60, check=False)
    # verify also reports unrelated units of the machine; only this unit's lines count.
    own = [line for line in (proc.stdout + proc.stderr).splitlines() if "saf-ray.service" in line]
    assert proc.returncode == 0 and not own, proc.stdout + proc.stderr


def test_the_stub_nvidia_smi_answers_as_without_an_nvidia_driver():
    """Exit 9 and NVIDIA's message: Ray 2.49.2's GPU check takes a non-zero exit for "no GPU"."""
    stub = REPO / "roles" / "ray_node" / "files" / "nvidia-smi"
    proc = subprocess.run([str(stub)], capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 9 and proc.stdout == ""
    assert proc.stderr.startswith("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
