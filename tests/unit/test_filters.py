"""The Jinja2 filters behind the parity table and the verify summary (filter_plugins/saf.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from saf import parity_report, text_table  # noqa: E402

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


def test_without_a_reference_the_majority_wins_and_missing_values_differ():
    report = parity_report({"A": SAME, "B": SAME, "C": {"python": "3.9.6"}}, ["python", "ray"])
    assert report["mismatched"] == ["python", "ray"]
    assert report["table"][-1] == "C     3.9.6   missing  <- differs"
