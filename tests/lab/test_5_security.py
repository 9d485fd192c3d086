"""Nobody outside the cluster reaches Ray: port by port, from the lab's outsider host PROBE.

PROBE sits on the same bridge as ALPHA and BETA (the "LAN") but is not in the cluster. Every port
a Ray process of this cluster listens on (read from the processes themselves) must be one the
inventory fixed, must answer the other cluster node, and must not answer PROBE.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from labkit import REPO, lab_exec, run_playbook

NODES = {"ALPHA": "198.18.0.11", "BETA": "198.18.0.12"}
FILES = REPO / "roles" / "ray_port_exposure" / "files"
# roles/saf/defaults/main.yml: the fixed ports, and the worker range.
FIXED = {6380, 6381, 6382, 6383, 6384, 6385, 52365, 10001, 44217, 44227}
WORKERS = range(11000, 12000)


def ray_sockets(host: str) -> list:
    proc = lab_exec(host, "/opt/saf/venv/bin/python", "-", "/opt/saf/ray/tmp",
                    input=(FILES / "ray_sockets.py").read_text())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def probe(source: str, targets: list) -> dict:
    proc = lab_exec(source, "python3", "-", "3", *targets, input=(FILES / "tcp_probe.py").read_text())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def exposed(host: str) -> list:
    """host:port of every Ray socket of ``host`` that is not bound to loopback."""
    ports = {s["port"] for s in ray_sockets(host) if not s["address"].startswith("127.")}
    return [f"{NODES[host]}:{port}" for port in sorted(ports)]


@pytest.fixture(scope="module")
def cluster(provisioned):
    return {host: exposed(host) for host in NODES}


@pytest.mark.parametrize("host", NODES)
def test_every_ray_port_is_a_fixed_one(cluster, host):
    ports = {int(target.rsplit(":", 1)[1]) for target in cluster[host]}
    assert ports, f"{host}: no Ray socket found"
    assert {p for p in ports if p not in FIXED and p not in WORKERS} == set()
    assert {6381, 6382, 6383, 6384, 6385, 52365} <= ports
    if host == "ALPHA":
        assert {6380, 44217, 44227} <= ports  # GCS, autoscaler and dashboard metrics: head node only


@pytest.mark.parametrize("host, peer", [("ALPHA", "BETA"), ("BETA", "ALPHA")])
def test_ray_ports_answer_the_other_node(cluster, host, peer):
    result = probe(peer, cluster[host])
    assert result["open"] == sorted(cluster[host]), result


@pytest.mark.parametrize("host", NODES)
def test_ray_ports_are_dropped_for_the_outsider(cluster, host):
    result = probe("PROBE", cluster[host])
    assert result["open"] == [] and result["silent"] == sorted(cluster[host]), result
    # The firewall names only Ray's ports: sshd on the same node still answers the outsider.
    assert probe("PROBE", [f"{NODES[host]}:22"])["open"] == [f"{NODES[host]}:22"]


def test_verify_lists_the_sockets_and_finds_none_exposed(provisioned):
    run = run_playbook("verify.yml")
    assert run.returncode == 0, str(run)
    assert "ALPHA: no Ray port answered outside the cluster." in run.output
    assert "BETA: no Ray port answered outside the cluster." in run.output


def exposure_cases() -> dict:
    """``{node: <testcase> of saf.verify.port_exposure}`` from reports/verify.xml."""
    cases = ET.parse(REPO / "reports" / "verify.xml").iter("testcase")
    return {case.get("name"): case for case in cases if case.get("classname") == "saf.verify.port_exposure"}


def test_without_a_probe_host_the_controller_probes(provisioned):
    """As on the Macs, whose inventory has no saf_probes: the controller (the lab machine's own
    namespace, outside the cluster) tries every Ray port itself, and finds each one closed."""
    run = run_playbook("verify.yml", env={"SAF_LAB_PROBES": "0"})
    assert run.returncode == 0, str(run)
    assert "The controller probed too, from 198.18.0.1." in run.output, str(run)
    cases = exposure_cases()
    assert sorted(cases) == sorted(NODES)
    for node, case in cases.items():
        assert case.find("skipped") is None and case.find("failure") is None, ET.tostring(case)
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props.get("probed_by") == "controller", (node, props)


def test_with_nothing_to_probe_from_the_cases_are_skipped_not_passed(provisioned):
    run = run_playbook("verify.yml", "-e", "ray_port_exposure_from_controller=false", env={"SAF_LAB_PROBES": "0"})
    assert run.returncode == 0, str(run)
    assert "no Ray port answered outside the cluster" not in run.output, str(run)
    cases = exposure_cases()
    assert sorted(cases) == sorted(NODES)
    for case in cases.values():
        skipped = case.find("skipped")
        assert skipped is not None and skipped.get("message", "").startswith("not probed"), ET.tostring(case)


def test_verify_fails_without_the_firewall_and_site_restores_it(provisioned, restore_cluster):
    assert lab_exec("BETA", "nft", "delete", "table", "inet", "saf_ray").returncode == 0
    run = run_playbook("verify.yml")
    assert run.returncode != 0, str(run)
    assert "answered PROBE, a host outside the cluster" in run.output, str(run)
    assert "BETA: Ray's 198.18.0.12:" in run.output, str(run)
    site = run_playbook("site.yml")
    assert site.returncode == 0 and site.recap["BETA"]["changed"] >= 1, str(site)
    assert run_playbook("verify.yml").returncode == 0


def test_reset_removes_the_firewall(provisioned, restore_cluster):
    run = run_playbook("playbooks/reset.yml")
    assert run.returncode == 0, str(run)
    for host in NODES:
        assert lab_exec(host, "nft", "list", "table", "inet", "saf_ray").returncode != 0
    again = run_playbook("playbooks/reset.yml")
    assert again.returncode == 0, str(again)


def test_tampered_wheel_fails_the_install_naming_it(provisioned, restore_cluster):
    """A wheel whose bytes differ from the committed lock's sha256 is refused, by file name."""
    assert run_playbook("playbooks/reset.yml", "--limit", "BETA").returncode == 0
    listing = lab_exec("BETA", "sh", "-c", "ls /opt/saf/wheelhouse/*/six-*.whl /opt/saf/wheelhouse/*/colorful-*.whl")
    wheel = sorted(listing.stdout.split())[0]
    name = wheel.rsplit("/", 1)[1]
    tamper = f"printf 'tampered' >> {wheel} && rm -rf /opt/saf/venvs/*"
    assert lab_exec("BETA", "sh", "-c", tamper).returncode == 0
    run = run_playbook("site.yml", "--limit", "ALPHA,BETA")
    assert run.returncode != 0, str(run)
    assert "DO NOT MATCH THE HASHES" in run.output and name in run.output, str(run)
    # Let the controller copy the wheelhouse again: it replaces the tampered file.
    assert lab_exec("BETA", "sh", "-c", "rm -f /opt/saf/wheelhouse/*/*.copied").returncode == 0
