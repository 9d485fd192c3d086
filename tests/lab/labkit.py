"""Fixtures for the lab integration tests: run playbooks against the lab over real SSH.

The lab (lab/saflab.py) must be up; `make test` brings it up first. Every playbook run has a
timeout, and its whole output is printed when an assertion about it fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "verify"))

import saf_connection  # noqa: E402  (testinfra over plain SSH: verify/saf_connection.py)

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
LAB_INVENTORY = REPO / "inventory" / "lab"
PLAYBOOK_TIMEOUT = 1200  # seconds; a cold site.yml downloads and installs about 100 MB of wheels
# Ansible's commands the tests call by name (ansible-inventory, ansible) are this venv's.
os.environ["PATH"] = f"{ANSIBLE_PLAYBOOK.parent}{os.pathsep}{os.environ.get('PATH', '')}"
# The Pythons the lab tool chose for the lab (lab/saflab.py up writes them as inventory variables):
# ``{'version', 'interpreter', 'prefix', 'source'}`` for the default runtime and for the newer one.
PYTHON_VARS = LAB_INVENTORY / "group_vars" / "saf_cluster" / "lab_python.yml"


def _lab_pythons() -> dict:
    try:
        return yaml.safe_load(PYTHON_VARS.read_text()) or {}
    except OSError:
        return {}  # the lab is not up: the `lab` fixture fails every lab test, saying so


_UNKNOWN = {"version": "(lab not up)", "interpreter": "(lab not up)", "prefix": "(lab not up)", "source": ""}
LAB_PYTHON = _lab_pythons().get("saf_lab_python", _UNKNOWN)
LAB_PYTHON_NEXT = _lab_pythons().get("saf_lab_python_next", _UNKNOWN)
RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)", re.M)


@dataclass
class PlaybookRun:
    """The outcome of one ansible-playbook run."""

    args: list
    returncode: int
    output: str

    @property
    def recap(self) -> dict:
        """PLAY RECAP counts per host: ``{host: {'ok': int, 'changed': int, ...}}``."""
        return {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in RECAP.finditer(self.output)
        }

    def __str__(self) -> str:
        return f"ansible-playbook {' '.join(self.args)} -> rc={self.returncode}\n{self.output}"


def run_playbook(*args: str, env: dict | None = None) -> PlaybookRun:
    """Run ansible-playbook from the repo root with ``args``; never longer than PLAYBOOK_TIMEOUT."""
    full_env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", **(env or {}))
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *args], cwd=REPO, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=PLAYBOOK_TIMEOUT, check=False,
    )
    run = PlaybookRun(list(args), proc.returncode, proc.stdout)
    # Keep the output on disk too: CI prints the tail of the newest one on failure.
    log_dir = REPO / "reports" / "test-runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}-{Path(args[-1]).stem}.log").write_text(str(run))
    return run


def lab_host(name: str):
    """A testinfra host for a lab node, reached through the lab inventory (real SSH)."""
    # Plain SSH with the connection variables Ansible resolves from the inventory, read at each call:
    # the lab's inventory grows and shrinks (test_7_three_nodes.py).
    return saf_connection.ssh_host(str(LAB_INVENTORY), name)


def raylet_running(name: str) -> bool:
    """Whether a raylet process runs on lab node ``name`` (its own PID namespace)."""
    return lab_host(name).run("pgrep -x raylet").rc == 0


@pytest.fixture(scope="session")
def lab():
    """Check the lab answers; `make test` brings it up, this only refuses to run without it."""
    proc = subprocess.run([sys.executable, str(REPO / "lab" / "saflab.py"), "status"], text=True,
                          capture_output=True, timeout=120, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the lab is not up (run `make lab-up`):\n{proc.stdout}{proc.stderr}")
    if LAB_PYTHON is _UNKNOWN:
        pytest.fail(f"{PYTHON_VARS} is missing: run `make lab-up`, which finds the lab's Pythons")
    return REPO


@pytest.fixture(scope="session")
def provisioned(lab):
    """A provisioned, running cluster: the first site.yml run of the session."""
    run = run_playbook("site.yml")
    assert run.returncode == 0, str(run)
    return run


@pytest.fixture(scope="session")
def verified(provisioned):
    """The first verify.yml run after provisioning, and the JSON report it wrote."""
    run = run_playbook("verify.yml")
    report_path = REPO / "reports" / "verify.json"
    assert run.returncode == 0, str(run)
    return run, json.loads(report_path.read_text())


def lab_exec(name: str, *command: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` inside lab host ``name``'s namespaces (nsenter, no SSH): for injecting
    faults SSH cannot, such as taking the host's link down. ``input`` goes to its stdin.

    The host has its own /tmp: a repo checked out under /tmp is not visible inside it, so files
    of the repo reach a host through ``input`` (see :func:`put_file`), never by path."""
    return subprocess.run([sys.executable, str(REPO / "lab" / "saflab.py"), "exec", name, "--", *command],
                          capture_output=True, text=True, timeout=timeout, check=False, input=input)


def put_file(name: str, path: str, content: str, mode: str = "0644") -> None:
    """Write ``content`` to ``path`` inside lab host ``name`` (its own view of the file system)."""
    proc = lab_exec(name, "sh", "-c", f'cat > "$1" && chmod {mode} "$1"', "sh", path, input=content)
    assert proc.returncode == 0, f"{name}: cannot write {path}: {proc.stderr}"


def raylet_pid(name: str) -> int:
    """PID of the raylet on lab node ``name`` (fails the test when none runs)."""
    return lab_host(name).process.get(comm="raylet").pid


def read_report() -> dict:
    """The JSON report verify.yml wrote on the controller."""
    return json.loads((REPO / "reports" / "verify.json").read_text())


@pytest.fixture
def restore_cluster(lab):
    """After the test, site.yml must bring the cluster back (and verify.yml pass)."""
    yield
    run = run_playbook("site.yml")
    assert run.returncode == 0, f"site.yml did not restore the cluster:\n{run}"
