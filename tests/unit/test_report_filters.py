"""verify.yml's machine-readable reports (filter_plugins/saf_reports.py): JUnit XML with one test
case per check per node, and the GFLOPS history behind the summary's change column."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from saf_reports import gflops_change, history_entries, history_entry, junit_xml, probe_failures, verify_cases  # noqa: E402

V = {"python": "3.9.23", "ray": "2.49.2", "mlx": "0.29.1"}
NODES = [{"host": h, "alive": True, "node_id": f"{h.lower()}-id"} for h in ("ALPHA", "BETA", "GAMMA")]
WORKERS = [{"host": "BETA", "passed": True, "gflops": 6.0, "matrix_size": 1024, "executed_on": "BETA.local"},
           {"host": "GAMMA", "passed": True, "gflops": 5.0, "matrix_size": 1024, "executed_on": "GAMMA.local"}]
CLEAN = {h: [[[], "PROBE"]] for h in ("ALPHA", "BETA", "GAMMA")}


def parse(cases):
    root = ET.fromstring(junit_xml(cases, timestamp="2026-11-29T20:00:00"))
    suite = root.find("testsuite")
    return root, suite, {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}


def test_one_case_per_check_per_node_all_passing():
    cases = verify_cases(WORKERS, NODES, {h: V for h in ("ALPHA", "BETA", "GAMMA")}, CLEAN, "ALPHA")
    root, suite, by_key = parse(cases)

    # 3 nodes x (parity, port exposure, GCS membership) + 2 workers x MLX probe
    assert len(by_key) == 11 and suite.get("tests") == "11" and suite.get("failures") == "0"
    assert root.get("tests") == "11"
    assert {name for (_, name) in by_key} == {"ALPHA", "BETA", "GAMMA"}
    assert ("saf.verify.mlx_probe", "ALPHA") not in by_key  # the head node runs no probe
    probe = by_key[("saf.verify.mlx_probe", "GAMMA")]
    assert probe.find("failure") is None
    assert {p.get("name"): p.get("value") for p in probe.iter("property")}["gflops"] == "5.0"
    assert suite.get("timestamp") == "2026-11-29T20:00:00"


def test_each_failure_lands_on_its_check_and_node():
    versions = {"ALPHA": V, "BETA": dict(V, ray="2.52.1"), "GAMMA": V}
    exposure = dict(CLEAN, GAMMA=[[["198.18.0.13:6381"], "PROBE"]])
    nodes = [NODES[0], NODES[1], dict(NODES[2], alive=False)]
    workers = [WORKERS[0], dict(WORKERS[1], passed=False, message="GAMMA: the task ran on ALPHA.local <&>")]

    _, suite, by_key = parse(verify_cases(workers, nodes, versions, exposure, "ALPHA"))

    assert suite.get("failures") == "4"
    assert "ray 2.52.1 (head node ALPHA: 2.49.2)" in by_key[("saf.verify.parity", "BETA")].find("failure").get("message")
    assert "PROBE reached 198.18.0.13:6381" in by_key[("saf.verify.port_exposure", "GAMMA")].find("failure").text
    assert "not Alive" in by_key[("saf.verify.gcs_membership", "GAMMA")].find("failure").text
    assert by_key[("saf.verify.mlx_probe", "GAMMA")].find("failure").text == "GAMMA: the task ran on ALPHA.local <&>"
    assert by_key[("saf.verify.mlx_probe", "BETA")].find("failure") is None


def test_a_node_missing_from_the_gcs_fails_membership():
    _, _, by_key = parse(verify_cases(WORKERS, NODES[:2], {h: V for h in ("ALPHA", "BETA", "GAMMA")}, CLEAN, "ALPHA"))
    assert by_key[("saf.verify.gcs_membership", "GAMMA")].find("failure").text == "not listed by the GCS"


def test_checks_that_did_not_run_are_skipped_not_passed():
    cases = verify_cases(WORKERS, NODES, {"ALPHA": None, "BETA": None, "GAMMA": None},
                         {"ALPHA": None, "BETA": None, "GAMMA": None}, "ALPHA")
    _, suite, by_key = parse(cases)
    assert suite.get("skipped") == "6" and suite.get("failures") == "0"
    skipped = by_key[("saf.verify.parity", "BETA")].find("skipped")
    assert skipped is not None and "did not run" in skipped.get("message")


def test_a_node_no_prober_tried_is_skipped_not_passed():
    """The old filter passed a node whose probe list was empty: no saf_probes host, nothing tried."""
    exposure = dict(CLEAN, BETA=[], GAMMA={"probed_by": [], "reached": [], "targets": [],
                                           "not_probed": "no probe host (inventory group saf_probes), and the "
                                                         "controller does not probe: it is a cluster node"})
    _, suite, by_key = parse(verify_cases(WORKERS, NODES, {h: V for h in ("ALPHA", "BETA", "GAMMA")}, exposure, "ALPHA"))
    assert suite.get("skipped") == "2" and suite.get("failures") == "0"
    assert by_key[("saf.verify.port_exposure", "BETA")].find("skipped").get("message") == \
        "not probed: no prober tried this node"
    assert "not probed: no probe host" in by_key[("saf.verify.port_exposure", "GAMMA")].find("skipped").get("message")
    alpha = by_key[("saf.verify.port_exposure", "ALPHA")]
    assert alpha.find("skipped") is None and alpha.find("failure") is None
    assert {p.get("name"): p.get("value") for p in alpha.iter("property")} == {"probed_by": "PROBE"}


def test_versions_that_were_not_read_fail_parity_even_when_the_head_lacks_them_too():
    """The old filter compared None with None: nodes whose versions were never read passed."""
    versions = {"ALPHA": {}, "BETA": {"python": "3.9.23", "ray": "import failed: no module", "mlx": None}}
    _, _, by_key = parse(verify_cases([], [], versions, {"ALPHA": None, "BETA": None}, "ALPHA"))
    alpha = by_key[("saf.verify.parity", "ALPHA")].find("failure")
    assert alpha is not None and "python not read (missing)" in alpha.text
    beta = by_key[("saf.verify.parity", "BETA")].find("failure").text
    assert "ray not read (import failed: no module)" in beta and "mlx not read (missing)" in beta
    assert "python 3.9.23 (head node ALPHA: not read)" in beta


def test_a_worker_without_a_probe_row_fails_and_so_does_a_run_without_workers():
    """The old filter wrote no mlx_probe case at all for a worker it had no row for."""
    _, _, by_key = parse(verify_cases(WORKERS[:1], NODES, {h: V for h in ("ALPHA", "BETA", "GAMMA")}, CLEAN, "ALPHA",
                                      ["BETA", "GAMMA"]))
    assert by_key[("saf.verify.mlx_probe", "GAMMA")].find("failure").text == "no MLX probe result for this worker node"
    _, suite, by_key = parse(verify_cases([], NODES[:1], {"ALPHA": V}, {"ALPHA": None}, "ALPHA", []))
    assert by_key[("saf.verify.mlx_probe", "ray_workers")].find("failure") is not None


def test_probe_failures_never_pass_an_empty_run():
    """cluster_verify's verdict: the old one rejected failed rows only, so no rows at all passed."""
    assert probe_failures(WORKERS, ["BETA", "GAMMA"]) == []
    assert probe_failures([], []) == ["no worker node was probed (the inventory's ray_workers is empty?)"]
    assert probe_failures(WORKERS[:1], ["BETA", "GAMMA"]) == ["GAMMA: no MLX probe result for this worker node"]
    failed = dict(WORKERS[1], passed=False, message="GAMMA: the task ran on ALPHA.local")
    assert probe_failures([WORKERS[0], failed], ["BETA", "GAMMA"]) == ["GAMMA: the task ran on ALPHA.local"]


def test_change_since_the_last_run_at_the_same_size():
    history = history_entries("\n".join([
        json.dumps({"time": "t1", "matrix_size": 1024, "gflops": {"BETA": 5.0, "GAMMA": 4.0}}),
        json.dumps({"time": "t2", "matrix_size": 2048, "gflops": {"BETA": 9.0}}),  # another size: not compared
        "{truncated",  # a line cut short is skipped
        json.dumps({"time": "t3", "matrix_size": 1024, "gflops": {"BETA": 7.5}}),
    ]))

    rows = gflops_change(WORKERS + [{"host": "DELTA", "passed": False, "gflops": None, "matrix_size": 1024}], history)

    assert [r["change"] for r in rows] == ["-20.0%", "+25.0%", "-"]
    assert [r["previous_gflops"] for r in rows] == [7.5, 4.0, None]


def test_first_run_says_new():
    assert [r["change"] for r in gflops_change(WORKERS, history_entries(""))] == ["new", "new"]


def test_history_records_only_passing_figures():
    entry = json.loads(history_entry([WORKERS[0], dict(WORKERS[1], passed=False)], "2026-11-29T20:00:00+00:00"))
    assert entry == {"time": "2026-11-29T20:00:00+00:00", "matrix_size": 1024, "gflops": {"BETA": 6.0}}
    # and the next run reads it back
    assert gflops_change([dict(WORKERS[0], gflops=6.6)], history_entries(json.dumps(entry)))[0]["change"] == "+10.0%"


def test_working_set_case_per_probed_worker_failed_passed_or_skipped_with_its_reason():
    workers = [dict(WORKERS[0], working_set_gib=72.0,
                    working_set={"verdict": "failed", "reason": "MLX recommends 72.0 GiB, wanted at least 80.0 GiB"}),
               dict(WORKERS[1], working_set={"verdict": "skipped", "reason": "MLX reports no Metal device here"})]

    _, suite, by_key = parse(verify_cases(workers, NODES, {h: V for h in ("ALPHA", "BETA", "GAMMA")}, CLEAN, "ALPHA"))

    failed = by_key[("saf.verify.working_set", "BETA")]
    assert failed.find("failure").text == "MLX recommends 72.0 GiB, wanted at least 80.0 GiB"
    assert {p.get("name"): p.get("value") for p in failed.iter("property")} == {"working_set_gib": "72.0"}
    skipped = by_key[("saf.verify.working_set", "GAMMA")]
    assert skipped.find("failure") is None and skipped.find("skipped").get("message") == "MLX reports no Metal device here"
    assert suite.get("skipped") == "1" and suite.get("failures") == "1"
