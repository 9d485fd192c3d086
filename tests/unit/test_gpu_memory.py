"""The GPU wired-memory limit: the sysctl test double (tests/doubles/bin/sysctl) behaves like macOS
sysctl for iogpu.wired_limit_mb and hw.memsize, and the gpu_memory role's macOS tasks, run for real
on the controller against it, set the limit now, install the LaunchDaemon that sets it again after
a boot (macOS forgets it: vllm-project/vllm-metal#65, jundot/omlx#1998), refuse a limit the Mac
cannot give, and undo both when the limit goes back to 0.

The non-root case runs the double as ``nobody`` under ``setpriv`` (util-linux), from a copy in a
0755 directory, as tests/unit/test_doubles_pmset.py does.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSCTL = REPO / "tests" / "doubles" / "bin" / "sysctl"
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "gpu_memory.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
SETPRIV = shutil.which("setpriv")
NOBODY = 65534
LABEL = "org.saf.gpu-wired-limit"
RAM_MIB = 96 * 1024  # the double's Mac Studio


def sysctl(state_dir, *args, binary=SYSCTL, as_nobody=False):
    env = dict(os.environ, SAF_FAKE_STATE_DIR=str(state_dir))
    prefix = []
    if as_nobody:
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        prefix = [SETPRIV, "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]
    return subprocess.run(prefix + [str(binary), *args], env=env, capture_output=True, text=True, timeout=30)


def limit(state_dir) -> int:
    result = sysctl(state_dir, "-n", "iogpu.wired_limit_mb")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_reads_a_new_mac_studio_and_sets_the_limit_as_root(tmp_path):
    assert sysctl(tmp_path, "-n", "hw.memsize", "iogpu.wired_limit_mb").stdout == "%d\n0\n" % (RAM_MIB << 20)
    assert sysctl(tmp_path, "iogpu.wired_limit_mb").stdout == "iogpu.wired_limit_mb: 0\n"
    if os.geteuid() != 0:
        pytest.skip("setting needs root, as with sysctl")
    result = sysctl(tmp_path, "iogpu.wired_limit_mb=65536")
    assert (result.returncode, result.stdout) == (0, "iogpu.wired_limit_mb: 0 -> 65536\n")
    assert limit(tmp_path) == 65536


@pytest.mark.parametrize("arg, message", [
    ("hw.memsize=1", "sysctl: oid 'hw.memsize' is read only\n"),
    ("iogpu.wired_limit_mb=lots", "sysctl: invalid integer 'lots'\n"),
    ("debug.iogpu.wired_limit=1", "sysctl: unknown oid 'debug.iogpu.wired_limit'\n"),
])
def test_refused_sets_exit_1_and_change_nothing(tmp_path, arg, message):
    result = sysctl(tmp_path, arg)
    assert (result.returncode, result.stderr) == (1, message)
    assert limit(tmp_path) == 0


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to run the double as nobody")
def test_setting_as_another_user_is_not_permitted(tmp_path):
    directory = Path(tempfile.mkdtemp(prefix="saf-sysctl-"))
    try:
        directory.chmod(0o755)
        copy = directory / "sysctl"
        shutil.copy2(SYSCTL, copy)
        result = sysctl(tmp_path, "iogpu.wired_limit_mb=65536", binary=copy, as_nobody=True)
    finally:
        shutil.rmtree(directory)
    assert (result.returncode, result.stderr) == (1, "sysctl: iogpu.wired_limit_mb: Operation not permitted\n")
    assert limit(tmp_path) == 0


class Mac:
    """A Mac's LaunchDaemons directory and its sysctl double, in a temporary directory."""

    def __init__(self, root: Path):
        self.bin = root / "usr" / "sbin"
        self.bin.mkdir(parents=True)
        self.sysctl = self.bin / "sysctl"
        shutil.copy2(SYSCTL, self.sysctl)
        self.daemons = root / "LaunchDaemons"
        self.daemons.mkdir()
        self.plist = self.daemons / f"{LABEL}.plist"
        # The saf role's settings (a dependency) name the Ray head node: this Mac is the cluster.
        self.inventory = root / "hosts.yml"
        self.inventory.write_text("all:\n  children:\n    saf_cluster:\n      children:\n        ray_head:\n"
                                  "          hosts:\n            localhost: {ansible_connection: local, "
                                  f"ansible_python_interpreter: {sys.executable}}}\n")

    def run_role(self, wired_limit_mb: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory), str(PLAYBOOK), "-e", f"gpu_memory_sysctl={self.sysctl}",
             "-e", f"saf_launchd_dir={self.daemons}", "-e", f"gpu_memory_wired_limit_mb={wired_limit_mb}"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))

    def limit(self) -> int:
        return limit(self.bin)

    def boot(self) -> None:
        """What a reboot does to the limit, then what launchd does with a RunAtLoad daemon at boot."""
        state = self.bin / "fake-sysctl.json"
        if state.exists():
            state.write_text(state.read_text().replace('"iogpu.wired_limit_mb"', '"forgotten"'))
        assert self.limit() == 0
        if self.plist.exists():
            job = plistlib.loads(self.plist.read_bytes())
            assert job["RunAtLoad"] is True
            subprocess.run(job["ProgramArguments"], check=True, capture_output=True, timeout=30)


def changed(run: subprocess.CompletedProcess) -> int:
    recap = run.stdout[run.stdout.rindex("PLAY RECAP"):]
    return int(recap.split("changed=")[1].split()[0])


@pytest.fixture
def mac(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("setting the limit needs root, as with sysctl")
    return Mac(tmp_path)


def test_limit_is_set_now_and_again_after_a_boot_and_a_rerun_changes_nothing(mac):
    run = mac.run_role(65536)
    assert run.returncode == 0, run.stdout + run.stderr
    assert mac.limit() == 65536
    job = plistlib.loads(mac.plist.read_bytes())
    assert job == {"Label": LABEL, "ProgramArguments": [str(mac.sysctl), "iogpu.wired_limit_mb=65536"],
                   "RunAtLoad": True}
    assert "localhost: the GPU may wire 65536 MiB, now and after a boot." in run.stdout

    again = mac.run_role(65536)
    assert again.returncode == 0 and changed(again) == 0, again.stdout

    mac.boot()
    assert mac.limit() == 65536


def test_a_limit_the_mac_cannot_give_is_refused_naming_the_figures(mac):
    run = mac.run_role(RAM_MIB - 1024)
    assert run.returncode != 0
    text = " ".join(run.stdout.split())
    assert (f"localhost: gpu_memory_wired_limit_mb {RAM_MIB - 1024} MiB is above what this Mac can give the GPU: "
            f"{RAM_MIB} MiB of RAM minus gpu_memory_reserve_mb 8192 MiB left to macOS = {RAM_MIB - 8192} MiB") in text
    assert mac.limit() == 0 and not mac.plist.exists()


def test_zero_removes_the_boot_job_and_gives_macos_its_own_limit_back(mac):
    assert mac.run_role(65536).returncode == 0
    run = mac.run_role(0)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not mac.plist.exists() and mac.limit() == 0
    mac.boot()
    assert mac.limit() == 0
    assert changed(mac.run_role(0)) == 0
