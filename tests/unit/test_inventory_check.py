"""The inventory check's refusals that issue 16 adds (roles/inventory_check, filters in
filter_plugins/saf_preflight.py), before any host is touched:

* a saf_ray_temp_dir under which Ray's longest Unix socket path would pass 103 bytes (macOS's
  sun_path limit; Ray 2.49.2 refuses to start: ray-project/ray#7951, verl-project/verl#1120);
* a module interpreter (ansible_python_interpreter) outside the Pythons ansible-core 2.19, and
  Mitogen under its strategy, run modules on (Homebrew's python3 moves to each new release), read
  with one `raw` command.

The filters are called directly; the role runs through ``ansible-playbook`` over a local
connection (tests/unit/playbooks/inventory_check.yml), with a shell script standing in for an
interpreter of another release.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "filter_plugins"))

import saf_preflight  # noqa: E402
from saf_preflight import (  # noqa: E402
    module_python_check,
    python_release,
    ray_socket_path_check,
    ray_socket_paths,
)

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "inventory_check.yml"
# What Ray appends to its temp dir on the head node, worst case:
# "/session_YYYY-MM-DD_HH-MM-SS_ffffff_<7-digit pid>/sockets/dash_MetricsHead".
HEAD_SUFFIX = len("/session_2025-01-01_00-00-00_000000_1234567/sockets/dash_MetricsHead")


def temp_dir_of(size: int) -> str:
    """An absolute path of exactly ``size`` bytes."""
    base = "/Users/ci-runner/"
    return base + "t" * (size - len(base))


# --- Ray's socket paths ---------------------------------------------------------------------------

def test_the_session_name_is_rays():
    """Ray 2.49.2 (ray/_private/node.py): session_{strftime('%Y-%m-%d_%H-%M-%S_%f')}_{os.getpid()}."""
    stamp = datetime.datetime(2025, 1, 2, 3, 4, 5, 6).strftime("%Y-%m-%d_%H-%M-%S_%f")
    assert len(stamp) == 26
    assert re.fullmatch(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}_\d{7}", saf_preflight.RAY_SESSION_WORST)
    assert HEAD_SUFFIX == 68


def test_the_default_temp_dir_passes():
    check = ray_socket_path_check("/opt/saf/ray/tmp", "ALPHA", head=True)
    assert check["ok"] is True and check["msg"] == ""
    assert check["path"].endswith("/sockets/dash_MetricsHead") and check["bytes"] == 16 + HEAD_SUFFIX == 84
    assert check["limit"] == 103 and check["max_temp_dir_bytes"] == 35


def test_a_path_of_117_bytes_is_refused_naming_host_path_and_limit():
    temp = temp_dir_of(117 - HEAD_SUFFIX)
    check = ray_socket_path_check(temp, "ALPHA", head=True)
    assert check["ok"] is False and check["bytes"] == 117
    path = temp + "/" + saf_preflight.RAY_SESSION_WORST + "/sockets/dash_MetricsHead"
    assert check["path"] == path
    assert check["msg"].startswith("ALPHA: saf_ray_temp_dir %s is too long" % temp)
    assert "%s, 117 bytes, over the 103-byte limit" % path in check["msg"]
    assert "at most 35 bytes" in check["msg"] and "/opt/saf/ray/tmp" in check["msg"]


def test_the_limit_is_the_last_byte_that_fits():
    assert ray_socket_path_check(temp_dir_of(35), "ALPHA", head=True)["ok"] is True
    assert ray_socket_path_check(temp_dir_of(36), "ALPHA", head=True)["ok"] is False
    # Linux allows 107; without the OS known the check uses macOS's 103 everywhere.
    assert saf_preflight.UNIX_SOCKET_PATH_MAX == {"Darwin": 103, "Linux": 107}
    assert ray_socket_path_check(temp_dir_of(39), "ALPHA", head=True, limit=107)["ok"] is True
    assert ray_socket_path_check(temp_dir_of(40), "ALPHA", head=True, limit=107)["ok"] is False


def test_a_worker_has_no_dashboard_sockets():
    """Workers: the raylet's and the object store's sockets (the latter renamed plasma_store.N when
    a restarted worker finds the old one in the head's session directory)."""
    paths = ray_socket_paths("/opt/saf/ray/tmp")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["plasma_store.99", "raylet.99"]
    assert ray_socket_path_check(temp_dir_of(117 - HEAD_SUFFIX), "BETA")["bytes"] == 116
    head = ray_socket_paths("/opt/saf/ray/tmp", head=True)
    assert {p.rsplit("/", 1)[1] for p in head} >= {"dash_MetricsHead", "dash_NodeHead", "plasma_store.99"}


def test_lengths_are_bytes_and_a_trailing_slash_changes_nothing():
    assert ray_socket_path_check("/opt/saf/ray/tmp/", "ALPHA", head=True)["bytes"] == 84
    assert ray_socket_path_check("/opt/saf/ray/tmé", "ALPHA", head=True)["bytes"] == 85


# --- the module interpreter -----------------------------------------------------------------------

@pytest.mark.parametrize("text, release", [
    ("3.13.1\n", "3.13.1"),
    ("3.13.1\r\n", "3.13.1"),                  # raw over ssh -tt
    ("Last login: Mon\n3.12.7\n", "3.12.7"),   # whatever a shell printed first
    ("3.14.0rc1\n", "3.14.0"),
    ("", None),
    ("zsh:1: no such file or directory: /opt/homebrew/bin/python3.13\n", None),
])
def test_python_release(text, release):
    assert python_release(text) == release


def raw(stdout, rc=0, stderr=""):
    return {"rc": rc, "stdout": stdout, "stderr": stderr}


@pytest.mark.parametrize("release", ["3.8.20", "3.9.23", "3.13.1"])
def test_supported_releases_pass(release):
    assert module_python_check(raw(release + "\n"), "ALPHA", "/opt/homebrew/bin/python3.13", "mitogen_linear") == {
        "ok": True, "release": release, "msg": ""}


def test_a_release_past_ansible_cores_range_is_refused_with_the_fix():
    check = module_python_check(raw("3.14.0\r\n"), "ALPHA", "/opt/homebrew/bin/python3", "mitogen_linear")
    assert check["ok"] is False and check["release"] == "3.14.0"
    msg = check["msg"]
    assert msg.startswith("ALPHA: the module interpreter /opt/homebrew/bin/python3 (ansible_python_interpreter) "
                          "is Python 3.14.0, but ansible-core 2.19 runs modules on Python 3.8 to 3.13.")
    assert "brew install python@3.13" in msg and "ansible_python_interpreter: /opt/homebrew/bin/python3.13" in msg
    # Mitogen runs 3.14; leaving it would not help, so it is not offered.
    assert "Mitogen" not in msg and "ANSIBLE_STRATEGY" not in msg


def test_a_release_below_the_range_is_refused():
    check = module_python_check(raw("3.7.17\n"), "BETA", "/usr/local/bin/python3.7", "linear")
    assert check["ok"] is False and "is Python 3.7.17, but ansible-core 2.19 runs modules on Python 3.8" in check["msg"]


def test_only_mitogens_range_exceeded_offers_the_linear_strategy(monkeypatch):
    monkeypatch.setitem(saf_preflight.MITOGEN_TARGET_PYTHONS, "max", "3.12")
    check = module_python_check(raw("3.13.1\n"), "ALPHA", "/opt/homebrew/bin/python3.13", "mitogen_linear")
    assert check["ok"] is False
    assert "but Mitogen 0.3.54 (the mitogen_linear strategy) runs modules on Python 2.4 to 3.12" in check["msg"]
    assert "Fix: run without Mitogen: ANSIBLE_STRATEGY=linear ansible-playbook ..." in check["msg"]
    assert "brew install python@3.12" in check["msg"]
    # Under the linear strategy Mitogen's range does not apply.
    assert module_python_check(raw("3.13.1\n"), "ALPHA", "/opt/homebrew/bin/python3.13", "linear")["ok"] is True


def test_an_interpreter_that_does_not_run_is_refused_with_what_it_said():
    check = module_python_check(
        raw("zsh:1: no such file or directory: /opt/homebrew/bin/python3.13\r\n", rc=127,
            stderr="Shared connection to 100.64.0.12 closed.\r\n"),
        "BETA", "/opt/homebrew/bin/python3.13", "mitogen_linear")
    assert check["ok"] is False and check["release"] is None
    assert check["msg"].startswith("BETA: the module interpreter /opt/homebrew/bin/python3.13 "
                                   "(ansible_python_interpreter) did not print its release (exit 127: zsh:1: no such "
                                   "file or directory: /opt/homebrew/bin/python3.13).")
    assert "Shared connection" not in check["msg"] and "brew install python@3.13" in check["msg"]


def test_the_ranges_are_those_of_the_pinned_ansible_core_and_mitogen():
    """ansible-core 2.19 and Mitogen 0.3.54 are what requirements.txt pins; a bump must revisit the
    ranges in filter_plugins/saf_preflight.py."""
    import ansible.release
    from ansible import constants
    from ansible.module_utils import basic

    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["ansible-core"].startswith("2.19.") and ansible.release.__version__.startswith("2.19.")
    assert basic._PY_MIN == (3, 8)
    newest = max(tuple(int(n) for n in name[len("python"):].split("."))
                 for name in constants.config.get_config_value("INTERPRETER_PYTHON_FALLBACK")
                 if re.fullmatch(r"python\d+\.\d+", name))
    assert (saf_preflight.ANSIBLE_TARGET_PYTHONS["min"], saf_preflight.ANSIBLE_TARGET_PYTHONS["max"]) == (
        "3.8", "%d.%d" % newest) == ("3.8", "3.13")
    assert pins["mitogen"] == importlib.metadata.version("mitogen") == "0.3.54"
    classifiers = importlib.metadata.metadata("mitogen").get_all("Classifier")
    assert "Programming Language :: Python :: 3.14" in classifiers
    assert saf_preflight.MITOGEN_TARGET_PYTHONS["max"] == "3.14"


# --- the role, through ansible-playbook ------------------------------------------------------------

SETPRIV = shutil.which("setpriv")
NOBODY = 65534

FAKE_PYTHON = """#!/bin/sh
# Stands in for an interpreter of another release: prints what platform.python_version() would.
echo "{release}"
"""


def run_role(tmp_path: Path, hostvars: dict, env: dict | None = None):
    """Run the inventory check on HEAD (ray_head) and WORKER (ray_workers) over a local connection;
    ``hostvars`` ({host: {name: value}}) adds to each host. Returns (returncode, output)."""
    base = {"HEAD": {"saf_node_ip": "198.18.0.11", "saf_node_hostname": "HEAD.local"},
            "WORKER": {"saf_node_ip": "198.18.0.12", "saf_node_hostname": "WORKER.local"}}
    hosts = {host: dict(values, **hostvars.get(host, {})) for host, values in base.items()}
    inventory = {"saf_cluster": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {"ray_head": {"hosts": {"HEAD": hosts["HEAD"]}},
                     "ray_workers": {"hosts": {"WORKER": hosts["WORKER"]}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    environ = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    environ.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **(env or {}))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(PLAYBOOK)],
                          cwd=REPO, capture_output=True, text=True, timeout=180, check=False, env=environ)
    return proc.returncode, proc.stdout + proc.stderr


def fake_python(tmp_path: Path, release: str) -> str:
    path = tmp_path / ("python" + release)
    path.write_text(FAKE_PYTHON.format(release=release))
    path.chmod(0o755)
    return str(path)


def flat(out: str) -> str:
    return " ".join(out.split())


def test_a_sample_inventory_passes(tmp_path):
    """As inventory/studio: no saf_python_interpreter (a default from facts), a supported interpreter."""
    code, out = run_role(tmp_path, {})
    assert code == 0, out
    assert out.count("TASK [inventory_check : Read the release of each node's module interpreter]") == 1, out
    assert re.search(r"^ok: \[WORKER\]", out.split("Check each node's module interpreter")[1], re.MULTILINE), out


def test_a_long_temp_dir_is_refused_before_any_host_is_touched(tmp_path):
    temp = temp_dir_of(117 - HEAD_SUFFIX)
    code, out = run_role(tmp_path, {"HEAD": {"saf_ray_temp_dir": temp}})
    assert code != 0, out
    assert ("HEAD: saf_ray_temp_dir %s is too long for Ray's Unix sockets" % temp) in flat(out), out
    assert "/sockets/dash_MetricsHead, 117 bytes, over the 103-byte limit" in flat(out), out
    assert "Read the release of each node's module interpreter" not in out, out  # HEAD never reached


def test_an_interpreter_past_the_range_is_refused_naming_host_release_and_fix(tmp_path):
    """Under the Mitogen strategy (ansible.cfg): the read goes around Mitogen, which could not start a
    shell script as its interpreter."""
    interpreter = fake_python(tmp_path, "3.14.0")
    code, out = run_role(tmp_path, {"WORKER": {"ansible_python_interpreter": interpreter}})
    assert code != 0, out
    assert ("WORKER: the module interpreter %s (ansible_python_interpreter) is Python 3.14.0, but ansible-core "
            "2.19 runs modules on Python 3.8 to 3.13." % interpreter) in flat(out), out
    assert "brew install python@3.13" in out, out
    assert "UNREACHABLE" not in out and re.search(r"^fatal: \[HEAD\]", out, re.MULTILINE) is None, out


def test_a_missing_interpreter_is_refused_naming_host(tmp_path):
    code, out = run_role(tmp_path, {"HEAD": {"ansible_python_interpreter": "/opt/homebrew/bin/python3.13"}},
                         env={"ANSIBLE_STRATEGY": "linear"})
    assert code != 0, out
    assert ("HEAD: the module interpreter /opt/homebrew/bin/python3.13 (ansible_python_interpreter) did not print "
            "its release (exit 127") in flat(out), out


# --- Homebrew's versioned Python, installed when missing ------------------------------------------

@pytest.mark.parametrize("interpreter, wanted", [
    ("/opt/homebrew/bin/python3.13", {"prefix": "/opt/homebrew", "formula": "python@3.13"}),
    ("/opt/homebrew/opt/python@3.12/bin/python3.12", {"prefix": "/opt/homebrew", "formula": "python@3.12"}),
    ("/usr/local/bin/python3.11", {"prefix": "/usr/local", "formula": "python@3.11"}),
    ("/opt/homebrew/bin/python3", {}),  # unversioned: moves to each new release; refused, not installed
    ("python3.13", {}),
])
def test_the_formula_that_provides_an_interpreter(interpreter, wanted):
    assert saf_preflight.homebrew_python_formula(interpreter) == wanted


class Homebrew:
    """A Homebrew prefix in a 0755 temporary directory owned by ``nobody``, with the brew test double
    run as ``nobody`` (brew, and the double, refuse root) and providing a python3.13 that prints 3.13.7."""

    def __init__(self):
        self.prefix = Path(tempfile.mkdtemp(prefix="saf-homebrew-"))
        self.prefix.chmod(0o755)
        bin_dir = self.prefix / "bin"
        bin_dir.mkdir()
        shutil.copy2(REPO / "tests" / "doubles" / "bin" / "brew", bin_dir / "brew-double")
        source = self.prefix / "python3.13-build"
        source.write_text(FAKE_PYTHON.format(release="3.13.7"))
        source.chmod(0o755)
        (bin_dir / "fake-brew.json").write_text(json.dumps({"installed": {}, "provides": {"python@3.13": str(source)}}))
        (bin_dir / "brew").write_text(
            f"#!/bin/sh\nexec {SETPRIV} --reuid={NOBODY} --regid={NOBODY} --clear-groups /usr/bin/python3 "
            f"{bin_dir / 'brew-double'} \"$@\"\n")
        (bin_dir / "brew").chmod(0o755)
        for path in [self.prefix, *self.prefix.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        self.interpreter = str(bin_dir / "python3.13")

    def remove(self):
        shutil.rmtree(self.prefix)


@pytest.fixture
def homebrew():
    if os.geteuid() != 0 or SETPRIV is None:
        pytest.skip("needs root and setpriv to run the brew double as another account")
    brew = Homebrew()
    yield brew
    brew.remove()


def test_a_missing_homebrew_python_is_installed_then_checked(tmp_path, homebrew):
    code, out = run_role(tmp_path, {"WORKER": {"ansible_python_interpreter": homebrew.interpreter}})
    assert code == 0, out
    assert re.search(r"Install the module interpreter from Homebrew when it is missing\] \**\s+changed: \[WORKER\]", out), out
    assert subprocess.run([homebrew.interpreter], capture_output=True, text=True).stdout == "3.13.7\n"
    # A second run finds it there.
    code, out = run_role(tmp_path, {"WORKER": {"ansible_python_interpreter": homebrew.interpreter}})
    assert code == 0 and "changed: [WORKER]" not in out, out


def test_homebrew_refusing_root_is_reported_naming_host_formula_and_fix(tmp_path, homebrew):
    """The connecting account is root here: Homebrew refuses it, as it does on a Mac."""
    brew = Path(homebrew.prefix) / "bin" / "brew"
    brew.write_text(f"#!/bin/sh\nexec /usr/bin/python3 {brew.with_name('brew-double')} \"$@\"\n")
    code, out = run_role(tmp_path, {"WORKER": {"ansible_python_interpreter": homebrew.interpreter}})
    assert code != 0, out
    text = flat(out)
    assert (f"WORKER: the module interpreter {homebrew.interpreter} (ansible_python_interpreter) is missing and "
            f"`{homebrew.prefix}/bin/brew install python@3.13` failed (exit 1): Error: Running Homebrew as root is "
            "extremely dangerous") in text, out
    assert "as the account that owns Homebrew (brew refuses root)" in text, out
    assert not Path(homebrew.interpreter).exists()
