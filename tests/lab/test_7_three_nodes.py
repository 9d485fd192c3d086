"""N nodes by inventory only: a lab of three cluster hosts (ALPHA head, BETA and GAMMA workers)
runs the same site.yml and verify.yml, and every worker gets its own pinned task and summary row.

The lab goes to three hosts (`saflab.py up --hosts 3`, what `SAF_LAB_HOSTS=3 make demo` does) and
back to two after, leaving the two-host cluster as site.yml makes it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from labkit import REPO, lab_host, read_report, run_playbook

pytestmark = pytest.mark.lab
SAFLAB = [sys.executable, str(REPO / "lab" / "saflab.py")]


def lab_up(count: int) -> None:
    proc = subprocess.run([*SAFLAB, "up", "--hosts", str(count)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def inventory_workers() -> list:
    proc = subprocess.run([str(REPO / "inventory" / "lab" / "hosts.py"), "--list"], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(proc.stdout)["ray_workers"]["hosts"]


@pytest.fixture
def three_hosts(verified):
    lab_up(3)
    try:
        yield
    finally:
        lab_up(2)
        restore = run_playbook("site.yml")
        assert restore.returncode == 0, f"site.yml did not restore the two-host cluster:\n{restore}"


def test_three_hosts_by_inventory_only(three_hosts):
    assert inventory_workers() == ["BETA", "GAMMA"]

    site = run_playbook("site.yml")
    assert site.returncode == 0, str(site)
    assert "GAMMA  198.18.0.13  GAMMA.local" in site.output, str(site)  # the membership table
    assert lab_host("GAMMA").run("pgrep -x raylet").rc == 0

    verify = run_playbook("verify.yml")
    assert verify.returncode == 0, str(verify)
    rows = {row["host"]: row for row in read_report()["workers"]}
    assert set(rows) == {"BETA", "GAMMA"}
    for host, row in rows.items():
        assert row["passed"] and row["executed_on"] == f"{host}.local", row
        assert row["gflops"] > 0, row
    # one summary row per worker, one bounded wait for both (a single probe task)
    summary = verify.output[verify.output.index("TASK [cluster_verify : Show the summary]"):]
    assert re.search(r"BETA +BETA\.local", summary) and re.search(r"GAMMA +GAMMA\.local", summary), summary
    assert verify.output.count("TASK [cluster_verify : Run an MLX matmul pinned to each worker, all at once]") == 1
    # and the JUnit report has GAMMA's cases
    cases = {(c.get("classname"), c.get("name")) for c in ET.parse(REPO / "reports" / "verify.xml").iter("testcase")}
    assert {("saf.verify.mlx_probe", "GAMMA"), ("saf.verify.parity", "GAMMA"),
            ("saf.verify.gcs_membership", "GAMMA"), ("saf.verify.port_exposure", "GAMMA")} <= cases


def test_back_to_two_hosts_lists_only_beta():
    assert inventory_workers() == ["BETA"]
