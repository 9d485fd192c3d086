"""Checks of the SAF lab built by lab/saflab.py.

They need root. The module brings the lab up itself (``saflab.py up`` is
re-entrant) and never takes it down: later tests reuse the lab.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAFLAB = REPO / "lab" / "saflab.py"
STATE = REPO / ".lab"
HOSTS = {"alpha": ("198.18.0.11", "ALPHA.local"), "beta": ("198.18.0.12", "BETA.local")}

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]


def saflab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the lab CLI."""
    return subprocess.run(
        [sys.executable, str(SAFLAB), *args], check=False, capture_output=True, text=True, timeout=timeout
    )


def wanted_hosts() -> int:
    """At least 2 cluster hosts, and never fewer than the lab (or SAF_LAB_HOSTS) has (PROBE,
    the outsider, is always added and does not count, nor do hosts brought up by ``add``)."""
    try:
        hosts = json.loads((STATE / "lab.json").read_text())["hosts"]
        recorded = len([name for name, entry in hosts.items() if name != "probe" and not entry.get("added")])
    except (OSError, ValueError, KeyError):
        recorded = 0
    return max(2, recorded, int(os.environ.get("SAF_LAB_HOSTS", "2")))


def ssh(host: str, command: str, known_hosts: Path = STATE / "known_hosts") -> subprocess.CompletedProcess:
    """Run a shell command on a lab host over real SSH, strict host key checking."""
    address = HOSTS[host][0]
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(STATE / "id_ed25519"),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-o", "StrictHostKeyChecking=yes", "-o", f'UserKnownHostsFile="{known_hosts}"',
        "-o", "GlobalKnownHostsFile=/dev/null", f"root@{address}", command,
    ]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ssh_ok(host: str, command: str) -> str:
    """Like ssh() but the command must succeed; returns its stdout."""
    result = ssh(host, command)
    assert result.returncode == 0, f"{host}: {command!r} failed: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module", autouse=True)
def lab_up() -> None:
    """Bring the lab up (no-op when it already runs)."""
    result = saflab("up", "--hosts", str(wanted_hosts()))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_hostname_over_ssh(host: str) -> None:
    out = ssh_ok(host, "hostname; python3 -c 'import socket; print(socket.gethostname())'")
    assert out.split() == [HOSTS[host][1]] * 2


def test_host_key_checking_is_on(tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = ssh("alpha", "true", known_hosts=empty)
    assert result.returncode != 0
    assert "Host key verification failed" in result.stderr


def test_alpha_reaches_beta_sshd() -> None:
    beta = HOSTS["beta"][0]
    ssh_ok("alpha", f"python3 -c \"import socket; socket.create_connection(('{beta}', 22), 3).close()\"")


def test_processes_are_private_and_outlive_the_session() -> None:
    marker = f"sleep {100000 + random.randrange(100000)}"
    ssh_ok("beta", f"nohup {marker} >/dev/null 2>&1 &")
    try:
        beta_ps = ssh_ok("beta", "ps -e -o ppid=,args=").splitlines()
        assert f"1 {marker}" in [line.strip() for line in beta_ps], "orphan not reparented to the host's PID 1"
        alpha_ps = ssh_ok("alpha", "ps -e -o args=").splitlines()
        assert marker not in [line.strip() for line in alpha_ps]
    finally:
        ssh("beta", f"pkill -x -f '{marker}'")


def test_orphans_are_reaped() -> None:
    ssh_ok("alpha", "for i in 1 2 3; do (sleep 0.1 &); done")
    states = ssh_ok("alpha", "sleep 1; ps -e -o stat=").split()
    assert not [state for state in states if state.startswith("Z")]


@pytest.mark.parametrize("directory", ["/tmp", "/opt/saf", "/dev/shm"])
def test_directory_is_private(directory: str) -> None:
    path = f"{directory}/saflab-test-{random.randrange(10**9)}"
    ssh_ok("alpha", f"echo alpha > {path}")
    try:
        assert ssh("beta", f"test -e {path}").returncode == 1
        assert not Path(path).exists(), f"{path} leaked to the machine"
    finally:
        ssh("alpha", f"rm -f {path}")


def test_opt_saf_is_backed_by_the_state_dir() -> None:
    name = f"saflab-test-{random.randrange(10**9)}"
    ssh_ok("alpha", f"touch /opt/saf/{name}")
    try:
        assert (STATE / "hosts" / "alpha" / "opt-saf" / name).exists()
    finally:
        ssh("alpha", f"rm -f /opt/saf/{name}")


def test_no_route_to_the_outside() -> None:
    assert ssh_ok("alpha", "ip route show default").strip() == ""
    probe = (
        "import errno, socket\n"
        "try:\n"
        "    socket.create_connection(('203.0.113.1', 53), 3)\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode.get(exc.errno), exc.strerror)\n"
    )
    out = ssh_ok("alpha", f"python3 -c \"{probe}\"")
    assert out.strip() == "ENETUNREACH Network is unreachable"


def test_status_reports_all_up() -> None:
    result = saflab("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALPHA" in result.stdout and "BETA" in result.stdout


def test_exec_runs_inside_the_host() -> None:
    result = saflab("exec", "beta", "--", "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "BETA.local"


def test_up_again_is_a_no_op() -> None:
    before = json.loads((STATE / "lab.json").read_text())["hosts"]
    result = saflab("up", "--hosts", str(wanted_hosts()))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("ALPHA", "BETA"):
        assert any(line.startswith(name) and "up (already running)" in line for line in result.stdout.splitlines())
    assert json.loads((STATE / "lab.json").read_text())["hosts"] == before


def test_add_and_remove_touch_only_the_named_hosts() -> None:
    """molecule's create and destroy: ZETA comes and goes; the lab's own hosts keep running (same
    init PIDs), `up` leaves an added host alone, and `remove` deletes the host's files too."""
    before = json.loads((STATE / "lab.json").read_text())["hosts"]
    added = saflab("add", "zeta")
    try:
        assert added.returncode == 0, added.stdout + added.stderr
        zeta = saflab("exec", "zeta", "--", "sh", "-c", "hostname; echo kept > /opt/saf/marker")
        assert zeta.returncode == 0 and zeta.stdout.splitlines()[0] == "ZETA.local", zeta.stdout + zeta.stderr
        up = saflab("up", "--hosts", str(wanted_hosts()))
        assert up.returncode == 0 and "ZETA" not in up.stdout, up.stdout + up.stderr
        assert saflab("status").returncode == 0
    finally:
        removed = saflab("remove", "zeta")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    after = json.loads((STATE / "lab.json").read_text())["hosts"]
    assert after == before
    assert not (STATE / "hosts" / "zeta").exists()
    assert saflab("remove", "zeta").returncode == 0  # twice is fine
    assert "unknown host" in saflab("add", "omega").stderr
