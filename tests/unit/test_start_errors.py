"""roles/ray_node/files/start_errors.py: the first error line of every log one Ray start wrote."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "ray_node" / "files" / "start_errors.py"
spec = importlib.util.spec_from_file_location("start_errors", SCRIPT)
start_errors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(start_errors)

START = datetime.datetime(2026, 11, 30, 10, 40, 55)


def stamp(seconds: int, cpp: bool = True) -> str:
    text = (START + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S") + ",123"
    return f"[{text}" if cpp else text


def test_lines_before_the_start_and_state_dumps_are_left_out():
    lines = [f"{stamp(-30)} E 1 1] (raylet) an error of an earlier start",
             f"{stamp(2)} I 9 9] (raylet) [state-dump] NodeManager: 0 failed, Error count 0",
             f"{stamp(3)} I 9 9] (raylet) started",
             f"{stamp(5)} E 9 9] (raylet) main.cc:123 dashboard_agent failed and raylet fate-shares with it."]
    assert start_errors.first_error(lines, START) == lines[3]


def test_an_unstamped_traceback_line_counts_with_the_stamp_before_it():
    lines = [f"{stamp(1, cpp=False)} INFO agent.py:1 -- starting", "Traceback (most recent call last):",
             '  File "x.py", line 1']
    assert start_errors.first_error(lines, START) == "Traceback (most recent call last):"
    assert start_errors.first_error([f"{stamp(-1, cpp=False)} INFO x", "ValueError: too big"], START) is None


def test_a_session_and_the_service_logs_are_read_in_order(tmp_path):
    """Ray's own ValueError lands in the launchd job's stderr: it is named with the session's lines."""
    logs = tmp_path / "tmp" / "session_2026-11-30_10-40-55_000001_42" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "tmp" / "session_2026-11-01_00-00-00_000001_1" / "logs").mkdir(parents=True)  # older, empty
    (logs / "raylet.out").write_text(f"{stamp(5)} E 9 9] (raylet) dashboard_agent failed and raylet fate-shares with it.\n")
    (logs / "gcs_server.out").write_text(f"{stamp(4)} I 9 9] (gcs_server) all fine\n")
    (logs / "dashboard_agent.log").write_text(f"{stamp(4, cpp=False)} ERROR agent.py:2 -- Bad exception data from child\n")
    stderr = tmp_path / "ray.err"
    stderr.write_text("ValueError: The configured object store size (8.0 GiB) exceeds the optimal size on Mac (2.0 GiB).\n")
    found = start_errors.start_errors(START.timestamp(), str(tmp_path / "tmp"), [str(stderr)])
    assert [item["file"] for item in found] == ["raylet.out", "dashboard_agent.log", "ray.err"]
    assert found[2]["line"].startswith("ValueError: The configured object store size")


def test_logs_untouched_since_the_start_are_skipped(tmp_path):
    old = tmp_path / "ray.err"
    old.write_text("ValueError: from last week\n")
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    assert start_errors.start_errors(time.time() - 60, str(tmp_path / "none"), [str(old)]) == []


def test_the_script_runs_on_its_own_and_prints_json(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(time.time()), str(tmp_path)], capture_output=True,
                          text=True, timeout=30, check=True)
    assert json.loads(proc.stdout) == []


def test_a_node_restarted_within_a_session_is_read_from_its_newest_numbered_log(tmp_path):
    """Ray numbers the logs of a node started again in the same session: raylet.1.out, raylet.2.out."""
    logs = tmp_path / "session_2026-11-30_10-40-55_000001_42" / "logs"
    logs.mkdir(parents=True)
    line = f"{stamp(5)} I 9 9] (raylet) main.cc:339: Raylet graceful shutdown, reason message = dashboard_agent failed and raylet fate-shares with it."
    for name, text, age in (("raylet.out", "ValueError: first start\n", 300), ("raylet.1.out", "ValueError: second\n", 200),
                            ("raylet.2.out", line + "\n", 0)):
        (logs / name).write_text(text)
        os.utime(logs / name, (time.time() - age, time.time() - age))
    found = start_errors.start_errors(START.timestamp(), str(tmp_path), [])
    assert found == [{"file": "raylet.2.out", "line": line}]
