"""Issue 16 (h, i) outside the module: the GFLOPS history at each worker's own matrix size and the
nodes' resource table (filter_plugins/saf_reports.py), the note cluster_verify adds for a dead
worker, and the GPU resource on `ray start`'s command line (roles/ray_node/tasks/command_line.yml,
rendered by the role itself)."""

from __future__ import annotations

import json
import plistlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from saf_reports import FilterModule, gflops_change, history_entries, history_lines, node_resource_rows, worker_log_note  # noqa: E402

from test_service_definitions import render  # noqa: E402  (renders ray_node's service definitions)


def row(host, gflops, size, passed=True):
    return {"host": host, "gflops": gflops, "matrix_size": size, "passed": passed}


def test_one_history_line_per_size_and_the_change_at_equal_sizes():
    """BETA's probe grew to 8192, GAMMA's (a slower node) stopped at 4096: each is compared with its own
    size. history_entry alone wrote matrix_size null for such a run, which no later run ever matched."""
    first = history_lines([row("BETA", 11000.0, 8192), row("GAMMA", 6000.0, 4096)], "2026-11-30T10:00:00Z")
    assert [json.loads(line) for line in first] == [
        {"time": "2026-11-30T10:00:00Z", "matrix_size": 8192, "gflops": {"BETA": 11000.0}},
        {"time": "2026-11-30T10:00:00Z", "matrix_size": 4096, "gflops": {"GAMMA": 6000.0}}]
    history = history_entries("\n".join(first))
    rows = gflops_change([row("BETA", 11550.0, 8192), row("GAMMA", 6000.0, 8192)], history)
    assert [(r["host"], r["previous_gflops"], r["change"]) for r in rows] == [("BETA", 11000.0, "+5.0%"),
                                                                                ("GAMMA", None, "new")]


def test_a_run_at_one_size_writes_the_line_it_always_did():
    from saf_reports import history_entry
    workers = [row("BETA", 6.0, 1024), row("GAMMA", 5.0, 1024, passed=False)]
    assert history_lines(workers, "t") == [history_entry(workers, "t")]
    assert history_lines([], "t") == [history_entry([], "t")]


def test_each_nodes_resources_in_inventory_order():
    alive = [
        {"node_id": "b1", "address": "198.18.0.12", "hostname": "BETA.local",
         "resources": {"CPU": 2.0, "metal_gpu": 1.0, "memory": 8053063680.0, "object_store_memory": 268435456.0,
                       "node:198.18.0.12": 1.0}},
        {"node_id": "a1", "address": "198.18.0.11", "hostname": "ALPHA.local",
         "resources": {"CPU": 2.0, "metal_gpu": 1.0, "node:__internal_head__": 1.0}},
        {"node_id": "x9", "address": "198.18.0.99", "hostname": "stray", "resources": {}},
    ]
    members = [{"host": "ALPHA", "address": "198.18.0.11", "node_id": "a1"},
               {"host": "BETA", "address": "198.18.0.12", "node_id": "b1"}]
    assert node_resource_rows(alive, members) == [
        {"host": "ALPHA", "address": "198.18.0.11", "node_id": "a1", "resources": "CPU 2, metal_gpu 1"},
        {"host": "BETA", "address": "198.18.0.12", "node_id": "b1",
         "resources": "CPU 2, memory 7.5 GiB, metal_gpu 1, object_store_memory 256 MiB"},
        {"host": "stray", "address": "198.18.0.99", "node_id": "x9", "resources": "none"}]


def test_the_dead_worker_note():
    found = {"found": True, "summary": "worker process 18272 (Ray worker ID ec0b) killed by SIGABRT (...)"}
    assert worker_log_note({"item": {"host": "BETA"}, "stdout": json.dumps(found)}) == \
        "On BETA: worker process 18272 (Ray worker ID ec0b) killed by SIGABRT (...)"
    assert worker_log_note({"item": {"host": "BETA"}, "unreachable": True, "msg": "ssh: timed out"}) == \
        "its logs on BETA could not be read: the node is unreachable (ssh: timed out)"
    assert worker_log_note({"item": {"host": "BETA"}, "stdout": "", "stderr": "python: not found\n", "rc": 127}) == \
        "its logs on BETA could not be read: python: not found"


def test_the_filters_are_registered_beside_the_old_ones():
    filters = FilterModule().filters()
    assert {"history_lines", "node_resource_rows", "worker_log_note", "history_entry", "gflops_change"} <= set(filters)


# --------------------------------------------------------------------------- ray start --resources

def worker_argv(tmp_path, manager, **extra):
    out = render(tmp_path, manager, **extra)
    if manager == "launchd":
        return plistlib.loads((out / "WORKER" / "org.saf.ray.plist").read_bytes())["ProgramArguments"]
    return next(line for line in (out / "WORKER" / "saf-ray.service").read_text().splitlines()
                if line.startswith("ExecStart="))


def test_all_nodes_get_the_gpu_resource_as_one_argument(tmp_path):
    """saf_ray_gpu_resource_nodes: all (the lab): one argv item, the JSON Ray's --resources parses."""
    argv = worker_argv(tmp_path, "launchd", saf_ray_gpu_resource_nodes="all")
    assert '--resources={"metal_gpu": 1}' in argv and argv[-1] == "--block"


def test_the_systemd_unit_quotes_the_gpu_resource(tmp_path):
    exec_start = worker_argv(tmp_path, "systemd", saf_ray_gpu_resource_nodes="all", saf_ray_gpu_resource="gpu_slot")
    assert '"--resources={\\"gpu_slot\\": 1}"' in exec_start


@pytest.mark.parametrize("extra", [{}, {"saf_ray_gpu_resource_nodes": "all", "saf_ray_gpu_resource": ""}],
                         ids=["linux node, macos only", "resource off"])
def test_no_gpu_resource_on_a_linux_node_by_default_or_when_off(tmp_path, extra):
    """The controller's facts say Linux: the default (macos) leaves it out, as does an empty name."""
    argv = worker_argv(tmp_path, "launchd", **extra)
    assert not [arg for arg in argv if arg.startswith("--resources")]
