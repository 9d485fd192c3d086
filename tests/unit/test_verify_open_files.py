"""The testinfra spec of Ray's open-files limit (verify/test_saf_node.py,
test_ray_may_open_as_many_files_as_the_setting), run against fake hosts: it checks the raylet's
/proc limits on Linux and the launchd job behind the raylet on macOS, fails below the setting, and
skips (never passes) a Ray started directly, which no service manager limits.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

VERIFY = Path(__file__).resolve().parents[2] / "verify"
sys.path.insert(0, str(VERIFY))  # as pytest puts it for verify/conftest.py, which imports saf_connection


def load(name: str, path: Path):
    """A module of verify/ by its path: its conftest would clash with tests/unit's by name."""
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses look their module up there
    with warnings.catch_warnings():  # verify/conftest.py registers the specs' marks, for pytest verify only
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        module_spec.loader.exec_module(module)
    return module


Proc = load("saf_verify_conftest", VERIFY / "conftest.py").Proc
spec = load("saf_verify_test_saf_node", VERIFY / "test_saf_node.py")

WANTED = {"saf_ray_open_files_limit": 65536, "saf_ray_launchd_label": "org.saf.ray",
          "saf_launchd_dir": "/Library/LaunchDaemons", "saf_launchctl": "/bin/launchctl"}
BLOCK = Proc(100, 1, 501, "/opt/saf/venv/bin/python /opt/saf/venv/bin/ray start --address=198.18.0.11:6380 --block")
RAYLET = Proc(101, 100, 501, "/opt/saf/venv/lib/python3.9/site-packages/ray/core/src/ray/raylet/raylet --temp_dir=/opt/saf/ray/tmp")
DIRECT_RAYLET = Proc(101, 1, 501, RAYLET.args)
LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max processes             63422                63422                processes
Max open files            {soft}                {hard}               files
"""


class FakeHost:
    """What the spec asks of testinfra's host: system_info.type, file(), run(), check_output()."""

    def __init__(self, system, files=None, commands=None):
        self.system_info = SimpleNamespace(type=system)
        self.files, self.commands = files or {}, commands or {}

    def file(self, path):
        return SimpleNamespace(content_string=self.files[path])

    def run(self, command):
        return SimpleNamespace(rc=0, stdout=self.commands[command], stderr="")

    def check_output(self, command):
        return self.commands[command]


def check(host, procs, **wanted):
    spec.test_ray_may_open_as_many_files_as_the_setting(host, "BETA", {**WANTED, **wanted}, procs)


def test_linux_reads_the_raylets_soft_limit():
    host = FakeHost("linux", {"/proc/101/limits": LIMITS.format(soft=65536, hard=65536)})
    check(host, [BLOCK, RAYLET], saf_ray_service_manager="systemd")
    host.files["/proc/101/limits"] = LIMITS.format(soft=1024, hard=524288)
    with pytest.raises(AssertionError, match=r"BETA: the raylet \(pid 101\) may open 1024 files \(hard limit 524288\), "
                                             r"fewer than saf_ray_open_files_limit 65536"):
        check(host, [BLOCK, RAYLET])


def test_a_direct_start_is_skipped_naming_why():
    with pytest.raises(pytest.skip.Exception, match="started directly .* not under launchd or systemd"):
        check(FakeHost("linux"), [DIRECT_RAYLET], saf_ray_service_manager="direct")


def test_a_service_manager_without_its_supervised_start_fails():
    with pytest.raises(AssertionError, match="the inventory runs Ray under systemd, but the raylet"):
        check(FakeHost("linux"), [DIRECT_RAYLET], saf_ray_service_manager="systemd")


def mac(soft, hard, pid=100):
    plist = "/Library/LaunchDaemons/org.saf.ray.plist"
    return FakeHost("darwin", commands={
        "/bin/launchctl print system/org.saf.ray":
            f"system/org.saf.ray = {{\n\tpath = {plist}\n\tstate = running\n\tpid = {pid}\n}}\n",
        f"plutil -convert json -o - {plist}": json.dumps(
            {"Label": "org.saf.ray", "SoftResourceLimits": {"NumberOfFiles": soft},
             "HardResourceLimits": {"NumberOfFiles": hard}})})


def test_macos_checks_the_job_launchd_runs_the_raylet_under():
    check(mac(65536, 65536), [BLOCK, RAYLET])
    with pytest.raises(AssertionError, match=r"sets NumberOfFiles \{'SoftResourceLimits': 256\}"):
        check(mac(256, 65536), [BLOCK, RAYLET])
    with pytest.raises(AssertionError, match="not the process launchd runs for org.saf.ray"):
        check(mac(65536, 65536, pid=99), [BLOCK, RAYLET])
