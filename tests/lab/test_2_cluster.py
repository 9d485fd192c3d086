"""End to end on the lab: site.yml provisions a two-node cluster, verify.yml proves work lands
on BETA, and a second site.yml changes nothing."""

from __future__ import annotations

import re

import pytest

from labkit import lab_host, read_report, run_playbook

pytestmark = pytest.mark.lab
NODE_ID = re.compile(r"^[0-9a-f]{56}$")


def test_site_starts_a_head_and_a_worker(provisioned):
    # What each node runs is checked from outside by the testinfra specs in verify/ (make test).
    assert provisioned.recap["ALPHA"]["failed"] == 0
    assert provisioned.recap["BETA"]["failed"] == 0
    assert "ALPHA  198.18.0.11  ALPHA.local" in provisioned.output
    assert "BETA   198.18.0.12  BETA.local" in provisioned.output


def test_verify_reports_the_task_ran_on_beta(verified):
    run, report = verified
    (beta,) = report["workers"]
    assert beta["host"] == "BETA"
    assert beta["executed_on"] == "BETA.local"
    assert NODE_ID.match(beta["node_id"])
    assert beta["node_id"] == beta["target_node_id"]
    assert beta["passed"] is True
    assert beta["gflops"] > 0
    assert beta["device"].lower().startswith("device(cpu")
    assert "BETA.local" in run.output and "PASS" in run.output
    # No minimum working set is set, and the CPU backend has none: reported as skipped, never passed.
    assert beta["working_set_gib"] is None
    assert beta["working_set"] == {"verdict": "skipped", "reason": "no minimum set (saf_verify_min_working_set_gib is 0)"}


def test_report_holds_the_parity_table(verified):
    _, report = verified
    assert report["parity"]["ok"] is True
    rows = "\n".join(report["parity"]["table"])
    assert "ALPHA" in rows and "BETA" in rows and "2.49.2" in rows and "0.29.1" in rows


def test_second_site_run_changes_nothing(verified):
    pids = {name: lab_host(name).process.get(comm="raylet").pid for name in ("ALPHA", "BETA")}

    run = run_playbook("site.yml")

    assert run.returncode == 0, str(run)
    assert {"ALPHA", "BETA"} <= set(run.recap), str(run)
    assert all(counts["changed"] == 0 for counts in run.recap.values()), str(run)
    # Nothing was restarted: the same raylet process still runs on every node.
    assert pids == {name: lab_host(name).process.get(comm="raylet").pid for name in ("ALPHA", "BETA")}


def test_require_gpu_fails_on_the_cpu_backend_naming_the_worker(verified):
    run = run_playbook("verify.yml", "-e", "saf_verify_require_gpu=true", "-e", "saf_verify_min_working_set_gib=16")

    assert run.returncode != 0, str(run)
    assert "BETA" in run.output and "cpu" in run.output.lower(), str(run)
    # A wanted working set on a node without Metal is skipped with the reason, and is not the failure.
    (beta,) = read_report()["workers"]
    assert beta["working_set"] == {"verdict": "skipped",
                                   "reason": "MLX reports no Metal device here (its CPU backend), so no working set"}
    assert "working set" not in beta["message"]
    assert "FAIL" in run.output, str(run)


def test_verify_in_check_mode_selects_beta_and_submits_nothing(verified):
    run = run_playbook("verify.yml", "--check")

    assert run.returncode == 0, str(run)
    assert "CHECK" in run.output and "BETA" in run.output, str(run)
