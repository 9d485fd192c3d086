# -*- coding: utf-8 -*-
"""roles/saf/files/venv_state.py: the read node_env uses to skip pip, and parity_gate to compare."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "saf" / "files" / "venv_state.py"
LOCK = REPO / "locks" / "x86_64-manylinux_2_35-py3.9.18_ray-default-2.49.2_mlx-cpu-0.29.1.txt"

spec = importlib.util.spec_from_file_location("venv_state", SCRIPT)
venv_state = importlib.util.module_from_spec(spec)
spec.loader.exec_module(venv_state)


def test_the_committed_lock_pins_ray_and_mlx_and_nothing_twice():
    pins = venv_state.locked_pins(LOCK.read_text())
    assert pins["ray"] == "2.49.2" and pins["mlx"] == "0.29.1"
    lines = [line for line in LOCK.read_text().splitlines() if "==" in line and not line.startswith((" ", "#"))]
    assert len(pins) == len(lines) > 20  # every pinned line, hash lines and comments skipped


def test_names_compare_normalised_and_every_difference_is_listed():
    pins = venv_state.locked_pins("Ray==2.49.2 \\\n    --hash=sha256:00\nmlx_cpu==0.29.1\nzipp==3.0\n# via ray\n")
    installed = {"ray": "2.49.2", "mlx-cpu": "0.29.0"}
    assert venv_state.lock_differences(pins, installed) == ["mlx-cpu: want 0.29.1, have 0.29.0",
                                                            "zipp: want 3.0, have none"]
    assert venv_state.lock_differences(pins, dict(installed, **{"mlx-cpu": "0.29.1", "zipp": "3.0"})) == []


def test_the_script_reports_this_interpreter_and_an_unsatisfied_lock(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("pip==0.0.1\nsurely-not-installed-anywhere==1.0\n")
    out = subprocess.run([sys.executable, str(SCRIPT), str(lock)], capture_output=True, text=True, check=True).stdout
    state = json.loads(out)
    assert state["executable"] == sys.executable
    assert state["ray"].startswith("import failed") and state["mlx"].startswith("import failed")  # none here
    assert state["lock_found"] is True
    assert state["lock_differs"][1] == "surely-not-installed-anywhere: want 1.0, have none"
    assert state["lock_differs"][0].startswith("pip: want 0.0.1, have ")
    missing = json.loads(subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "absent")], capture_output=True,
                                        text=True, check=True).stdout)
    assert missing["lock_found"] is False and "lock_differs" not in missing
