"""The launchctl test double (tests/doubles/bin/launchctl) shows the launchd behaviours the
ray_node role must survive: a label that lingers after bootout, bootout exiting 36 while the job
stops, a disabled label refusing bootstrap with 119, and the open-files limits of a plist.

Each test runs a copy of the double in ``tmp_path`` (its state lives next to it) as a subprocess;
its jobs are ``sleep``. Every wait is bounded and short (lingers of 1-2 s). The double, like
launchctl, refuses the system domain to anyone but root: without root these tests skip.
"""

from __future__ import annotations

import ast
import json
import os
import plistlib
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DOUBLE = Path(__file__).resolve().parents[1] / "doubles" / "bin" / "launchctl"
LABEL = "org.saf.test"
SLEEP = shutil.which("sleep")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the double, like launchctl, lets only root use the system domain")


@pytest.fixture
def launchctl(tmp_path):
    """A copy of the double in tmp_path; its jobs are killed afterwards, whatever the test left."""
    copy = tmp_path / "launchctl"
    shutil.copy2(DOUBLE, copy)
    yield copy
    kill_jobs(tmp_path)


def kill_jobs(directory: Path) -> None:
    """SIGKILL every job (its process group) and supervisor the double started from ``directory``."""
    for path in (directory / "fake-launchctl").glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for pid, kill in ((state.get("pid"), os.killpg), (state.get("supervisor"), os.kill)):
            if pid:
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def run(launchctl, *args):
    return subprocess.run([sys.executable, str(launchctl), *args], capture_output=True, text=True, timeout=30)


def settings(launchctl, **values):
    (launchctl.parent / "fake-launchctl.json").write_text(json.dumps(values))


def plist(tmp_path, **extra) -> Path:
    path = tmp_path / f"{LABEL}.plist"
    job = {"Label": LABEL, "ProgramArguments": [SLEEP, "30"], "RunAtLoad": True, "KeepAlive": True,
           "ExitTimeOut": 2, **extra}
    path.write_bytes(plistlib.dumps(job))
    return path


def wait_for(predicate, seconds):
    """Poll ``predicate`` every 0.1 s for at most ``seconds``; returns its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def job_pid(launchctl) -> int:
    """The pid `print` shows for the job, once it runs (at most 5 s)."""
    def shown():
        found = re.search(r"pid = (\d+)", run(launchctl, "print", f"system/{LABEL}").stdout)
        return found and int(found.group(1))
    pid = wait_for(shown, 5)
    assert pid, "the job did not start"
    return pid


def alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_double_is_a_python_3_9_script_that_says_what_it_models_and_where_from():
    assert os.access(DOUBLE, os.X_OK)
    source = DOUBLE.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    doc = ast.get_docstring(ast.parse(source, filename=str(DOUBLE), feature_version=(3, 9)))
    assert doc.startswith("TEST DOUBLE")
    for report in ("headroomlabs-ai/headroom#1289", "Layr-Labs/d-inference#1102", "osquery/osquery#5698",
                   "DeterminateSystems/nix-installer#530, #555"):
        assert report in doc, report
    assert doc.count("models:") == doc.count("source:") == 3


@needs_root
def test_a_booted_out_label_lingers_and_refuses_bootstrap_with_5_until_it_is_gone(launchctl, tmp_path):
    settings(launchctl, linger_seconds=1.5)
    path = plist(tmp_path)
    assert run(launchctl, "bootstrap", "system", str(path)).returncode == 0
    pid = job_pid(launchctl)
    started = time.monotonic()
    out = run(launchctl, "bootout", f"system/{LABEL}")
    assert out.returncode == 0, out.stderr
    assert not alive(pid), "bootout returns once the job's process has exited"
    # Lingering: print still shows the label, bootstrap fails as launchctl does.
    shown = run(launchctl, "print", f"system/{LABEL}")
    assert shown.returncode == 0 and "state = not running" in shown.stdout
    refused = run(launchctl, "bootstrap", "system", str(path))
    assert (refused.returncode, refused.stderr) == (5, "Bootstrap failed: 5: Input/output error\n")
    assert time.monotonic() - started < 1.5, "the test was too slow to see the linger"
    # Then launchd forgets the label (print: 113) and bootstrap works again.
    assert wait_for(lambda: run(launchctl, "print", f"system/{LABEL}").returncode == 113, 5)
    assert run(launchctl, "bootstrap", "system", str(path)).returncode == 0
    assert job_pid(launchctl) != pid


@needs_root
def test_bootout_exit_36_still_stops_the_job(launchctl, tmp_path):
    settings(launchctl, bootout_exit=36)
    assert run(launchctl, "bootstrap", "system", str(plist(tmp_path))).returncode == 0
    pid = job_pid(launchctl)
    out = run(launchctl, "bootout", f"system/{LABEL}")
    assert (out.returncode, out.stderr) == (36, "Boot-out failed: 36: Operation now in progress\n")
    assert wait_for(lambda: not alive(pid) and run(launchctl, "print", f"system/{LABEL}").returncode == 113, 5)


@needs_root
def test_a_disabled_label_refuses_bootstrap_with_119_until_enabled(launchctl, tmp_path):
    path = plist(tmp_path)
    assert run(launchctl, "disable", f"system/{LABEL}").returncode == 0
    assert f'"{LABEL}" => disabled' in run(launchctl, "print-disabled", "system").stdout
    refused = run(launchctl, "bootstrap", "system", str(path))
    assert refused.returncode == 119
    assert refused.stderr == f"{path}: Service is disabled\nBootstrap failed: 119: Service is disabled\n"
    assert run(launchctl, "print", f"system/{LABEL}").returncode == 113, "a refused job is not loaded"
    # The disabled state outlives the job: only enable clears it.
    assert run(launchctl, "enable", f"system/{LABEL}").returncode == 0
    assert LABEL not in run(launchctl, "print-disabled", "system").stdout
    assert run(launchctl, "bootstrap", "system", str(path)).returncode == 0
    assert job_pid(launchctl)


@needs_root
@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads the job's limits from /proc (Linux)")
def test_the_plists_open_files_limits_reach_the_job(launchctl, tmp_path):
    soft, hard = 1000, 2000  # lowering needs no privilege and differs from any default
    path = plist(tmp_path, SoftResourceLimits={"NumberOfFiles": soft}, HardResourceLimits={"NumberOfFiles": hard})
    assert run(launchctl, "bootstrap", "system", str(path)).returncode == 0
    limits = Path(f"/proc/{job_pid(launchctl)}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert tuple(int(v) for v in line.split()[3:5]) == (soft, hard), line
