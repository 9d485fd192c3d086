"""The pure parts of the benchmark harness (tests/bench/saf_bench.py): what `ray up` is given, how
restarts and ratios are counted, and the verdict table."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import saf_bench  # noqa: E402  (the harness is a script, not a package)

RECORDS = {
    "ALPHA": {"argv": ["/opt/saf/venv/bin/ray", "start", "--head", "--port=6380", "--node-ip-address=198.18.0.11"],
              "environment": {"AUTOSCALER_METRIC_PORT": "44217"}},
    "BETA": {"argv": ["/opt/saf/venv/bin/ray", "start", "--address=198.18.0.11:6380", "--node-ip-address=198.18.0.12"],
             "environment": {"HOME": "/root"}},
}


def test_rayup_config_runs_safs_own_ray_start(tmp_path):
    nodes = (saf_bench.HEAD, saf_bench.WORKERS[0])
    config = yaml.safe_load(saf_bench.rayup_config(nodes, RECORDS, tmp_path / "c.yaml").read_text())
    assert config["provider"] == {"type": "local", "head_ip": "198.18.0.11", "worker_ips": ["198.18.0.12"]}
    assert config["min_workers"] == config["max_workers"] == 1
    head = config["head_start_ray_commands"][-1]
    assert head.startswith("env AUTOSCALER_METRIC_PORT=44217 /opt/saf/venv/bin/ray start --head --port=6380")
    assert head.endswith("--autoscaling-config=~/ray_bootstrap_config.yaml")
    worker = config["worker_start_ray_commands"][-1]
    assert "--address=198.18.0.11:6380" in worker and "--node-ip-address" not in worker


def test_restarts_count_node_ids_that_changed():
    assert saf_bench.restarted(["a", "b"], ["a", "b"]) == 0
    assert saf_bench.restarted(["a", "b"], ["a", "c"]) == 1
    assert saf_bench.restarted(["a", "b"], ["c", "d"]) == 2


def test_table_marks_missed_targets():
    text = saf_bench.table({"cold_start_vs_rayup": 0.5, "gflops_fidelity": 0.6, "rerun_ray_restarts": 0})
    rows = {line.split()[0]: line.split()[-1] for line in text.splitlines()[2:]}
    assert rows == {"cold_start_vs_rayup": "yes", "rerun_ray_restarts": "yes", "gflops_fidelity": "NO"}


def test_ratio():
    assert saf_bench.ratio(3.0, 4.0) == 0.75


def test_time_to_alive_is_the_later_of_exit_and_alive_and_keeps_both(monkeypatch):
    clock = iter([100.0, 103.0])  # the command starts at 100 s and exits at 103 s
    monkeypatch.setattr(saf_bench.time, "time", lambda: next(clock))
    monkeypatch.setattr(saf_bench, "start_alive_poll", lambda count: "poll")
    monkeypatch.setattr(saf_bench, "finish_alive_poll", lambda poll: {"alive_at": 108.5})  # a worker joins late
    split = {}
    assert saf_bench.time_to_alive(lambda: None, 2, split) == 8.5
    assert split == {"alive": [8.5], "exit": [3.0]}


def test_medians_lines_name_every_section_that_ran():
    raw = {"cold": {"median_seconds": {"site": 20.0, "rayup": 10.0},
                    "median_split_seconds": {"site": {"alive": 14.0, "exit": 20.0}, "rayup": {"alive": 10.0, "exit": 7.0}}},
           "scale": {"median_seconds": {"1": 9.0, "3": 10.0}}}
    lines = saf_bench.medians_lines(raw)
    assert lines[0] == "cold start (s, to Alive and exited): site 20.0 (Alive 14.0, exit 20.0), rayup 10.0 (Alive 10.0, exit 7.0)"
    assert lines[1] == "verify.yml by workers (s): 1: 9.0, 3: 10.0"


def test_parse_profile_reads_profile_tasks_recap_slowest_first():
    output = """PLAY RECAP ***
ALPHA : ok=3
TASKS RECAP ********************************************************************
Sunday 29 November 2026  18:09:11 +0000 (0:00:00.037)       0:00:27.540 *******
===============================================================================
ray_node : Run ray start ------------------------------------------------ 6.17s
ray_node : Wait until every node is Alive in the GCS -------------------- 6.52s
node_env : Install the locked Ray and MLX into the venv from the wheelhouse only --- 2.01s
"""
    assert saf_bench.parse_profile(output) == [
        ("ray_node : Wait until every node is Alive in the GCS", 6.52),
        ("ray_node : Run ray start", 6.17),
        ("node_env : Install the locked Ray and MLX into the venv from the wheelhouse only", 2.01)]
