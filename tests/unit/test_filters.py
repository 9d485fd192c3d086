"""The Jinja2 filters behind the parity table, the verify summary and the power settings (filter_plugins/saf.py)."""

from __future__ import annotations

import sys

import pytest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from saf import parity_report, pmset_drift, pmset_settings, runtime_tuples, text_table, upgrade_failures  # noqa: E402

SAME = {"python": "3.9.23", "ray": "2.49.2", "mlx": "0.29.1"}


def test_text_table_pads_columns_and_renders_missing_values():
    lines = text_table([{"host": "BETA", "gflops": 5.98}, {"host": "GAMMA"}], ["host", "gflops"])
    assert lines == ["host   gflops", "-----  ------", "BETA   5.98", "GAMMA  -"]


def test_equal_versions_pass_with_no_marker():
    report = parity_report({"ALPHA": SAME, "BETA": dict(SAME)}, ["python", "ray", "mlx"], "ALPHA")
    assert report["ok"] is True and report["mismatched"] == []
    assert not any("differs" in line for line in report["table"])


def test_a_worker_that_differs_from_the_head_is_marked():
    skewed = dict(SAME, ray="2.49.1")
    report = parity_report({"ALPHA": SAME, "BETA": skewed}, ["python", "ray", "mlx"], "ALPHA")
    assert report["ok"] is False and report["mismatched"] == ["ray"]
    alpha, beta = report["table"][2:]
    assert alpha == "ALPHA  3.9.23  2.49.2  0.29.1"
    assert beta == "BETA   3.9.23  2.49.1  0.29.1  <- differs"


def test_versions_missing_everywhere_are_not_parity():
    """The old filter found every host equal when none had a value: versions never read passed."""
    report = parity_report({"ALPHA": {}, "BETA": {"python": None}}, ["python", "ray"], "ALPHA")
    assert report["ok"] is False and report["mismatched"] == ["python", "ray"]
    assert report["table"][2:] == ["ALPHA  missing  missing  <- differs", "BETA   missing  missing  <- differs"]
    assert parity_report({}, ["python"])["ok"] is False  # no host at all proves nothing


def test_without_a_reference_the_majority_wins_and_missing_values_differ():
    report = parity_report({"A": SAME, "B": SAME, "C": {"python": "3.9.6"}}, ["python", "ray"])
    assert report["mismatched"] == ["python", "ray"]
    assert report["table"][-1] == "C     3.9.6   missing  <- differs"


# pmset output in pmset's own layout (Apple's pmset.c: a header flush left, then " %-20s %d" a
# setting), with the keys and order public captures show for each kind of Mac. Tabs and trailing
# notes are where pmset puts them.

# `pmset -g custom` on an Apple silicon desktop (keys as a Mac Studio, Mac14,13, lists them on
# macOS 26): one section, because there is no battery. "Sleep On Power Button" is printed under
# its raw preference name, wider than the 20-column field.
DESKTOP_CUSTOM = """\
AC Power:
 Sleep On Power Button 1
 autorestartatconnect 0
 lowpowermode         0
 standby              0
 ttyskeepawake        1
 powernap             1
 displaysleep         10
 womp                 1
 networkoversleep     0
 sleep                1
 tcpkeepalive         1
 autorestart          0
 disksleep            10
"""

# `pmset -g custom` on an Apple silicon laptop: Battery Power first, then AC Power.
LAPTOP_CUSTOM = """\
Battery Power:
 Sleep On Power Button 1
 lowpowermode         0
 standby              1
 ttyskeepawake        1
 hibernatemode        3
 powernap             1
 hibernatefile        /var/vm/sleepimage
 displaysleep         2
 womp                 0
 networkoversleep     0
 sleep                1
 lessbright           1
 tcpkeepalive         1
 disksleep            10
AC Power:
 Sleep On Power Button 1
 lowpowermode         0
 standby              1
 ttyskeepawake        1
 hibernatemode        3
 powernap             1
 hibernatefile        /var/vm/sleepimage
 displaysleep         10
 womp                 1
 networkoversleep     0
 sleep                0
 tcpkeepalive         1
 disksleep            10
"""

# Plain `pmset -g`: system-wide settings (SleepDisabled, tab-separated) then the live ones, with
# the processes holding sleep and display-sleep assertions in brackets.
LIVE = """\
System-wide power settings:
 SleepDisabled\t\t0
Currently in use:
 standby              0
 Sleep On Power Button 1
 autorestart          0
 powernap             1
 networkoversleep     0
 disksleep            10
 sleep                1 (sleep prevented by powerd, coreaudiod, sharingd)
 ttyskeepawake        1
 displaysleep         10 (display sleep prevented by caffeinate)
 tcpkeepalive         1
 lowpowermode         0
 womp                 1
"""

# The AC-power settings the power_settings role wants on a Mac Studio.
WANTED = {"sleep": 0, "disksleep": 0, "displaysleep": 10, "womp": 1, "autorestart": 1, "powernap": 0}


def test_a_desktop_has_only_ac_power_and_keeps_keys_with_spaces():
    sections = pmset_settings(DESKTOP_CUSTOM)
    assert list(sections) == ["AC Power"]
    ac = sections["AC Power"]
    assert len(ac) == 13
    assert ac["Sleep On Power Button"] == "1"
    assert (ac["sleep"], ac["displaysleep"], ac["disksleep"], ac["autorestart"]) == ("1", "10", "10", "0")


def test_a_laptop_has_battery_and_ac_power_each_with_its_own_values():
    sections = pmset_settings(LAPTOP_CUSTOM)
    assert list(sections) == ["Battery Power", "AC Power"]
    assert sections["Battery Power"]["womp"] == "0" and sections["AC Power"]["womp"] == "1"
    assert sections["Battery Power"]["displaysleep"] == "2" and sections["AC Power"]["sleep"] == "0"
    assert sections["AC Power"]["hibernatefile"] == "/var/vm/sleepimage"
    assert "lessbright" in sections["Battery Power"] and "lessbright" not in sections["AC Power"]


def test_plain_pmset_g_drops_the_notes_in_brackets():
    sections = pmset_settings(LIVE)
    assert sections["system"] == {"SleepDisabled": "0"}
    current = sections["current"]
    assert current["sleep"] == "1"
    assert current["displaysleep"] == "10"
    assert current["Sleep On Power Button"] == "1"
    assert len(current) == 12


def test_an_empty_system_wide_section_and_junk_lines():
    text = "System-wide power settings:\nCurrently in use:\n sleep                0\n"
    assert pmset_settings(text) == {"system": {}, "current": {"sleep": "0"}}
    assert pmset_settings("") == {}
    assert pmset_settings(None) == {}
    # A setting before any header and an unindented line that is not a header are skipped.
    text = " sleep 5\nNow drawing from 'AC Power'\nAC Power:\n sleep 0\n"
    assert pmset_settings(text) == {"AC Power": {"sleep": "0"}}


def test_drift_lists_only_the_keys_that_differ_in_wanted_order():
    ac = pmset_settings(DESKTOP_CUSTOM)["AC Power"]
    assert pmset_drift(ac, WANTED) == [
        {"key": "sleep", "current": "1", "wanted": "0"},
        {"key": "disksleep", "current": "10", "wanted": "0"},
        {"key": "autorestart", "current": "0", "wanted": "1"},
        {"key": "powernap", "current": "1", "wanted": "0"},
    ]


def test_no_drift_when_every_value_matches_as_a_string():
    ac = pmset_settings(DESKTOP_CUSTOM)["AC Power"]
    settled = dict(ac, sleep="0", disksleep="0", autorestart="1", powernap="0")
    assert pmset_drift(settled, WANTED) == []


def test_a_missing_key_or_section_is_drift_with_current_none():
    assert pmset_drift({"sleep": "0"}, {"sleep": 0, "womp": 1}) == [{"key": "womp", "current": None, "wanted": "1"}]
    assert pmset_drift(None, {"sleep": 0}) == [{"key": "sleep", "current": None, "wanted": "0"}]
    assert pmset_drift({"sleep": "0"}, None) == []


def test_lock_name_carries_platform_python_and_every_requirement():
    from saf import lock_name

    name = lock_name(["ray[default]==2.49.2", "mlx[cpu]==0.29.1"], "x86_64-manylinux_2_35", "3.9.18")
    assert name == "x86_64-manylinux_2_35-py3.9.18_ray-default-2.49.2_mlx-cpu-0.29.1.txt"
    # Another extra, Python or platform is another lock.
    assert lock_name(["ray==2.49.2", "mlx==0.29.1"], "aarch64-apple-darwin", "3.9.23") == \
        "aarch64-apple-darwin-py3.9.23_ray-2.49.2_mlx-0.29.1.txt"


def test_runtime_venv_names_one_directory_per_tuple():
    from saf import runtime_venv

    assert runtime_venv({"python": "3.9.23", "ray": "2.49.2", "mlx": "0.29.1"}, "/opt/saf/") == \
        "/opt/saf/venvs/py3.9.23-ray2.49.2-mlx0.29.1"
    assert runtime_venv({"python": "3.11.7", "ray": "2.52.1", "mlx": "0.29.1", "interpreter": "/x"}, "/opt/saf") == \
        "/opt/saf/venvs/py3.11.7-ray2.52.1-mlx0.29.1"


@pytest.mark.parametrize("runtime, key", [
    ({"python": "3.9.23", "ray": "", "mlx": "0.29.1"}, "ray"),
    ({"python": "3.9.23", "ray": "2.49.2"}, "mlx"),
    ({"python": "3.9/../x", "ray": "2.49.2", "mlx": "0.29.1"}, "python"),
    ({"python": "3.9.23", "ray": "2.49.2", "mlx": "0.29-1"}, "mlx"),
])
def test_runtime_venv_refuses_a_version_that_cannot_name_a_directory(runtime, key):
    from saf import runtime_venv

    with pytest.raises(ValueError, match=f"runtime {key} version"):
        runtime_venv(runtime, "/opt/saf")


def test_runtime_tuples_ignore_the_interpreter_path_and_keep_order():
    a = {"python": "3.9.18", "ray": "2.49.2", "mlx": "0.29.1"}
    b = {"python": "3.11.7", "ray": "2.52.1", "mlx": "0.29.1"}
    runtimes = [dict(a, interpreter="/x/python3.9"), dict(b, interpreter="/y"), dict(a, interpreter="/z/python3.9")]
    assert runtime_tuples(runtimes) == [a, b]
    assert runtime_tuples([dict(a, interpreter="/x"), dict(a, interpreter="/y")]) == [a]


def test_a_node_without_a_record_is_a_runtime_of_its_own():
    a = {"python": "3.9.18", "ray": "2.49.2", "mlx": "0.29.1"}
    assert runtime_tuples([a, {}]) == [a, {}]


def test_upgrade_failures_lists_each_noted_failure_in_order():
    nodes = [{"inventory_hostname": "ALPHA"}, {"upgrade_failure": "BETA: Ray did not start"}, {"upgrade_failure": ""},
             {"upgrade_failure": "the verification failed: x"}]
    assert upgrade_failures(nodes) == ["BETA: Ray did not start", "the verification failed: x"]
    assert upgrade_failures([{}, {}]) == []
