"""The pmset test double (tests/doubles/bin/pmset) behaves like macOS pmset on a Mac Studio.

Each test runs the fake as a subprocess with its state in ``tmp_path``. The non-root case runs it
as ``nobody`` under ``setpriv`` (util-linux), because the fake, like pmset, asks the kernel for
its effective user id.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from saf import pmset_settings  # noqa: E402

PMSET = Path(__file__).resolve().parents[1] / "doubles" / "bin" / "pmset"
USAGE = "Usage: pmset <options>\nSee pmset(1) for details: 'man pmset'\n"
SETPRIV = shutil.which("setpriv")
NOBODY = 65534


def run(state_dir, *args, as_nobody=False, pmset=PMSET):
    env = dict(os.environ, SAF_FAKE_STATE_DIR=str(state_dir))
    if as_nobody:  # the system's python3 for the double's shebang: a PATH entry under /root is out of reach
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    prefix = [SETPRIV, "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"] if as_nobody else []
    return subprocess.run(prefix + [str(pmset)] + list(args), env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def pmset_for_nobody():
    """A copy of the double that ``nobody`` can run wherever the clone is: a clone in root's home
    (mode 0700) is out of nobody's reach, and so is pytest's tmp_path (/tmp/pytest-of-root, 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="saf-pmset-"))
    try:
        directory.chmod(0o755)
        copy = directory / "pmset"
        shutil.copy2(PMSET, copy)
        copy.chmod(0o755)
        yield copy
    finally:
        shutil.rmtree(directory)


def custom(state_dir):
    result = run(state_dir, "-g", "custom")
    assert result.returncode == 0, result.stderr
    return pmset_settings(result.stdout)


def test_the_fake_is_an_executable_python_3_9_script_that_says_what_it_is():
    assert os.access(PMSET, os.X_OK)
    source = PMSET.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    tree = ast.parse(source, filename=str(PMSET), feature_version=(3, 9))
    assert ast.get_docstring(tree).startswith("TEST DOUBLE")


def test_first_use_shows_a_new_mac_studio_with_ac_power_only(tmp_path):
    sections = custom(tmp_path)
    assert list(sections) == ["AC Power"]
    ac = sections["AC Power"]
    assert {key: ac[key] for key in ("sleep", "displaysleep", "disksleep", "womp", "autorestart", "powernap")} == {
        "sleep": "1", "displaysleep": "10", "disksleep": "10", "womp": "1", "autorestart": "0", "powernap": "1",
    }
    assert ac["Sleep On Power Button"] == "1"
    assert (tmp_path / "fake-pmset.json").is_file()


def test_plain_g_shows_system_wide_and_current_settings_with_the_sleep_note(tmp_path):
    result = run(tmp_path, "-g")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[:2] == ["System-wide power settings:", "Currently in use:"]
    assert " sleep                1 (sleep prevented by powerd)" in lines
    sections = pmset_settings(result.stdout)
    assert sections["system"] == {} and sections["current"]["sleep"] == "1"


def test_setting_as_root_stores_the_values_and_g_custom_shows_them(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the fake, like pmset, refuses changes from other users")
    result = run(tmp_path, "-a", "sleep", "0", "DiskSleep", "0", "autorestart", "1", "powernap", "0")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    ac = custom(tmp_path)["AC Power"]
    assert (ac["sleep"], ac["disksleep"], ac["autorestart"], ac["powernap"]) == ("0", "0", "1", "0")
    assert ac["displaysleep"] == "10"


def test_a_change_that_leaves_odd_idle_timers_gets_pmsets_warning(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the fake, like pmset, refuses changes from other users")
    result = run(tmp_path, "-c", "disksleep", "0")
    assert result.returncode == 0
    assert result.stderr.startswith('Warning: Idle sleep timings for "AC Power" may not behave as expected.\n')
    assert "- Disk sleep should be non-zero whenever system sleep is non-zero." in result.stderr


def test_battery_settings_are_accepted_and_change_nothing_on_a_desktop(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the fake, like pmset, refuses changes from other users")
    before = custom(tmp_path)
    assert run(tmp_path, "-b", "sleep", "0").returncode == 0
    assert custom(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0 and SETPRIV is None,
                    reason="running as root without setpriv (util-linux): cannot run the fake as another user")
def test_setting_as_another_user_fails_like_pmset_and_changes_nothing(tmp_path, pmset_for_nobody):
    before = custom(tmp_path)
    # The fake refuses before it reads its state, as pmset does, so nobody needs no access to tmp_path.
    result = run(tmp_path, "-a", "sleep", "0", as_nobody=os.geteuid() == 0, pmset=pmset_for_nobody)
    assert result.returncode == 1, result.stderr
    assert result.stdout == "'%s' must be run as root...\n" % pmset_for_nobody
    assert custom(tmp_path) == before
    # Arguments are checked first: a bad one gets the usage text whoever runs it.
    assert run(tmp_path, "-a", "sleepy", "0", as_nobody=os.geteuid() == 0, pmset=pmset_for_nobody).stdout == USAGE


@pytest.mark.parametrize("args", [
    ("-a", "sleepy", "0"),       # unknown setting
    ("-a", "lidwake", "1"),      # real pmset knows it; a Mac Studio has no lid: the fake rejects it
    ("-a", "sleep", "soon"),     # not an integer
    ("-a", "sleep", "-5"),       # negative minutes
    ("-a", "sleep"),             # no value
    ("-x", "sleep", "0"),        # unknown flag
    (),                          # nothing at all
], ids=["unknown-key", "lidwake", "not-integer", "negative", "no-value", "bad-flag", "no-args"])
def test_bad_arguments_print_the_usage_and_exit_1_before_the_root_check(tmp_path, args):
    before = custom(tmp_path)
    result = run(tmp_path, *args)
    assert (result.returncode, result.stdout) == (1, USAGE)
    assert custom(tmp_path) == before


def test_what_the_fake_does_not_imitate_exits_2_and_says_so(tmp_path):
    result = run(tmp_path, "-g", "assertions")
    assert result.returncode == 2
    assert result.stderr.startswith("TEST DOUBLE pmset:")


def test_the_state_is_json_a_test_can_read(tmp_path):
    custom(tmp_path)
    state = json.loads((tmp_path / "fake-pmset.json").read_text())
    assert state["AC Power"]["sleep"] == 1 and state["sleep_prevented_by"] == ["powerd"]
