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
    raw["cold"].update(rounds=5, failures={"site": [], "rayup": [{"what": "r", "error": "e"}]})
    lines = saf_bench.medians_lines(raw)
    assert lines[0] == ("cold start (s, to Alive and exited; failed starts of rounds): site 20.0 (Alive 14.0, exit 20.0; "
                        "0/5 failed), rayup 10.0 (Alive 10.0, exit 7.0; 1/5 failed)")
    assert lines[1] == "verify.yml by workers (s): 1: 9.0, 3: 10.0; 0 failed run(s)"


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


def fake_lab(monkeypatch, outcomes: dict):
    """The cold start's and re-run's commands without a lab: ``outcomes[way]`` is the list of what
    each start of that way does in turn (a number of seconds, or a BenchError message)."""
    monkeypatch.setattr(saf_bench, "start_record", lambda node: RECORDS[node.name])
    monkeypatch.setattr(saf_bench, "stop_ray", lambda nodes: None)
    monkeypatch.setattr(saf_bench, "progress", lambda line: None)
    ways = {"site": "site.yml", "rayup": "ray up", "floor": "by hand"}
    monkeypatch.setattr(saf_bench, "playbook", lambda *a, **k: "site")
    monkeypatch.setattr(saf_bench, "ray_up", lambda config, cli: "rayup")
    monkeypatch.setattr(saf_bench, "start_by_hand", lambda nodes, records: "floor")

    def time_to_alive(command, count, split=None):
        outcome = outcomes[command()].pop(0)
        if isinstance(outcome, str):
            raise saf_bench.BenchError(outcome)
        return outcome
    monkeypatch.setattr(saf_bench, "time_to_alive", time_to_alive)
    return ways


def test_cold_start_counts_every_ways_failed_starts_and_goes_on(monkeypatch, tmp_path):
    fake_lab(monkeypatch, {"site": [20.0, "not every node was Alive in the GCS within 180 s", 22.0],
                           "rayup": [10.0, 12.0, 11.0],
                           "floor": ["ssh: connection closed", "ssh: connection closed", 8.0]})
    result = saf_bench.cold_start(3, Path("ray"), tmp_path)
    assert result["seconds"] == {"site": [20.0, 22.0], "rayup": [10.0, 12.0, 11.0], "floor": [8.0]}
    assert (result["site_failed_starts"], result["rayup_failed_starts"], result["floor_failed_starts"]) == (1, 0, 2)
    assert result["failures"]["site"] == [{"what": "cold start round 2/3: site",
                                           "error": "not every node was Alive in the GCS within 180 s"}]
    assert result["cold_start_vs_rayup"] == saf_bench.ratio(21.0, 11.0)


def test_a_way_that_never_starts_gives_nan_not_a_stop(monkeypatch, tmp_path):
    fake_lab(monkeypatch, {"site": [20.0], "rayup": [10.0], "floor": ["refused"]})
    result = saf_bench.cold_start(1, Path("ray"), tmp_path)
    assert result["floor_failed_starts"] == 1 and result["cold_start_vs_floor"] != result["cold_start_vs_floor"]  # nan


def test_rerun_counts_a_broken_round_and_starts_a_healthy_cluster_again(monkeypatch, tmp_path):
    fake_lab(monkeypatch, {"site": [20.0, 20.0], "rayup": ["GCS not up", 10.0, 10.0]})
    ids = iter([["a", "b"], ["a", "b"], ["a", "b"], ["a", "b"],           # site: two rounds, nothing restarted
                ["c", "d"], "a node never came back", ["e", "f"], ["e", "g"]])

    def alive_node_ids(count):
        value = next(ids)
        if isinstance(value, str):
            raise saf_bench.BenchError(value)
        return value
    monkeypatch.setattr(saf_bench, "alive_node_ids", alive_node_ids)
    result = saf_bench.rerun(2, Path("ray"), tmp_path)
    assert result["site"]["restarts"] == [0, 0] and result["site"]["failed_rounds"] == 0
    rayup = result["rayup"]
    # Setup failed once ("GCS not up"), round 1 lost a node, the cluster was started again, round 2 restarted one.
    assert rayup["setup_failed_starts"] == 1 and rayup["failed_rounds"] == 1 and rayup["restarts"] == [1]
    assert [f["error"] for f in rayup["failures"]] == ["GCS not up", "a node never came back"]
    assert result["rerun_ray_restarts"] == 0


def test_stop_ray_tries_a_closed_ssh_connection_again(monkeypatch):
    calls = []

    def ssh(node, command, timeout=300, input=None):
        calls.append(node.name)
        if len(calls) == 1:
            raise saf_bench.BenchError("ssh: Connection closed by 198.18.0.12 port 22")
        return ""
    monkeypatch.setattr(saf_bench, "ssh", ssh)
    monkeypatch.setattr(saf_bench.time, "sleep", lambda s: None)
    saf_bench.stop_ray([saf_bench.WORKERS[0]])
    assert calls == ["BETA", "BETA"]
    calls.clear()
    monkeypatch.setattr(saf_bench, "ssh", lambda *a, **k: (_ for _ in ()).throw(saf_bench.BenchError("closed")))
    try:
        saf_bench.stop_ray([saf_bench.WORKERS[0]])
    except saf_bench.BenchError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a node that never answers is an error")


def test_a_step_that_cannot_finish_is_reported_and_the_next_runs(monkeypatch):
    monkeypatch.setattr(saf_bench, "progress", lambda line: None)

    def broken():
        raise saf_bench.BenchError("scale: site.yml never started the 4 nodes")
    assert saf_bench.run_step("scale", broken) == {"error": "scale: site.yml never started the 4 nodes"}
    assert saf_bench.run_step("verify", lambda: {"median_verify_seconds": 9.0}) == {"median_verify_seconds": 9.0}
    assert saf_bench.medians_lines({"scale": {"error": "scale: site.yml never started the 4 nodes"}}) == [
        "scale: did not finish: scale: site.yml never started the 4 nodes"]
