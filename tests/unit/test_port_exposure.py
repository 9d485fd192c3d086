"""verify.yml's port exposure check never passes on nothing (roles/ray_port_exposure,
filter_plugins/saf_exposure.py): who probes (the saf_probes hosts, and the controller unless it is a
cluster node), what each node's probes found, and "not probed" wherever nobody tried.

The filters are tested directly; the role itself through ansible-playbook over a local connection
(verify.yml --tags exposure), with a fake venv whose python prints the node's Ray sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "filter_plugins"))

from saf_exposure import (  # noqa: E402
    exposure_notes,
    exposure_probers,
    exposure_result,
    exposure_summary,
    exposure_table,
    exposure_targets,
)
from saf_reports import verify_cases  # noqa: E402

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
LOCAL_ADDRESSES = REPO / "roles" / "ray_port_exposure" / "files" / "local_addresses.py"
NODES = {"ALPHA": "198.18.0.11", "BETA": "198.18.0.12"}
SOCKETS = [{"pid": 1, "process": "gcs_server", "address": "::", "port": 6380},
           {"pid": 2, "process": "raylet", "address": "0.0.0.0", "port": 6381},
           {"pid": 3, "process": "ray_client_server", "address": "127.0.0.1", "port": 10001},
           {"pid": 2, "process": "raylet", "address": "0.0.0.0", "port": 6381}]
OUTSIDE = {"own": [], "source": {a: "198.18.0.1" for a in NODES.values()}}  # the lab's controller


def probes(*found):
    """A registered loop result of the probe task: (prober name, tcp_probe.py output or None for skipped)."""
    results = []
    for name, output in found:
        item = {"name": name, "host": "localhost" if name == "controller" else name}
        results.append({"item": item, "skipped": True} if output is None else {"item": item, "stdout": json.dumps(output)})
    return {"results": results}


def silent(targets):
    return {"open": [], "closed": [], "silent": sorted(targets)}


# --- who probes -----------------------------------------------------------------------------------

def test_a_controller_outside_the_cluster_probes_every_node_besides_the_probe_hosts():
    plan = exposure_probers(["PROBE"], OUTSIDE, NODES)
    assert [p["name"] for p in plan["probers"]] == ["PROBE", "controller"]
    controller = plan["probers"][1]
    assert controller["host"] == "localhost" and controller["controller"] and controller["addresses"] is None
    assert plan["controller"] == {"probes": True, "reason": None, "source": ["198.18.0.1"]}
    assert plan["reason"] is None


def test_a_controller_that_is_a_cluster_node_does_not_probe_and_says_so():
    plan = exposure_probers([], {"own": ["198.18.0.11"], "source": {"198.18.0.11": "198.18.0.11",
                                                                      "198.18.0.12": "198.18.0.11"}}, NODES)
    assert plan["probers"] == []
    assert plan["controller"]["reason"] == "it is a cluster node (it holds ALPHA's address 198.18.0.11)"
    assert plan["reason"].startswith("no probe host (inventory group saf_probes), and the controller does not probe: ")


def test_a_controller_reaching_the_nodes_from_a_cluster_address_does_not_probe():
    plan = exposure_probers(["PROBE"], {"own": [], "source": {"198.18.0.11": "198.18.0.12",
                                                               "198.18.0.12": "198.18.0.12"}}, NODES)
    assert [p["name"] for p in plan["probers"]] == ["PROBE"]
    assert "BETA's address 198.18.0.12, which the firewall admits" in plan["controller"]["reason"]


def test_the_controller_can_be_left_out():
    plan = exposure_probers([], OUTSIDE, NODES, False)
    assert plan["probers"] == [] and plan["controller"]["reason"] == "ray_port_exposure_from_controller is false"
    assert exposure_probers([], None, NODES)["controller"]["reason"] == "its own addresses were not read"


def test_the_controller_probes_only_the_nodes_it_has_a_route_to():
    plan = exposure_probers([], {"own": [], "source": {"198.18.0.11": "198.18.0.1", "198.18.0.12": None}}, NODES)
    assert plan["probers"][0]["addresses"] == ["198.18.0.11"]
    # BETA: the probe task skipped the controller; BETA is not probed, and the reason says why.
    result = exposure_result(probes(("controller", None)), SOCKETS, "198.18.0.12", plan)
    assert result["verdict"] == "not probed"
    assert result["not_probed"] == "no prober has a route to 198.18.0.12 (controller)"
    nowhere = exposure_probers([], {"own": [], "source": {a: None for a in NODES.values()}}, NODES)
    assert nowhere["probers"] == [] and nowhere["controller"]["reason"] == "it has no route to any cluster node"


# --- what each node's probes found ----------------------------------------------------------------

def test_targets_are_the_ports_off_loopback_once_each():
    assert exposure_targets(SOCKETS, "198.18.0.11") == ["198.18.0.11:6380", "198.18.0.11:6381"]
    assert exposure_targets([{"address": "::ffff:127.0.0.1", "port": 1}, {"address": "::1", "port": 2}], "x") == []


def test_closed_to_every_prober_names_each_of_them():
    targets = exposure_targets(SOCKETS, "198.18.0.11")
    result = exposure_result(probes(("PROBE", silent(targets)), ("controller", silent(targets))), SOCKETS,
                             "198.18.0.11", exposure_probers(["PROBE"], OUTSIDE, NODES))
    assert result == {"address": "198.18.0.11", "targets": targets, "probed_by": ["PROBE", "controller"],
                      "reached": [], "not_probed": None, "verdict": "closed"}


def test_a_port_open_to_the_controller_is_open():
    targets = exposure_targets(SOCKETS, "198.18.0.11")
    result = exposure_result(
        probes(("PROBE", silent(targets)),
               ("controller", {"open": ["198.18.0.11:6381"], "closed": [], "silent": ["198.18.0.11:6380"]})),
        SOCKETS, "198.18.0.11", exposure_probers(["PROBE"], OUTSIDE, NODES))
    assert result["verdict"] == "open"
    assert result["reached"] == [{"prober": "controller", "open": ["198.18.0.11:6381"]}]


def test_no_prober_is_not_probed_never_closed():
    """The old role asserted over an empty list of probe results: every node passed untried."""
    plan = exposure_probers([], {"own": ["198.18.0.11"], "source": {}}, NODES)
    result = exposure_result({"results": [], "skipped": True}, SOCKETS, "198.18.0.11", plan)
    assert result["verdict"] == "not probed" and result["probed_by"] == []
    assert result["not_probed"] == plan["reason"]


@pytest.mark.parametrize("sockets, reason", [
    ([], "no listening Ray socket of this cluster found on this node"),
    ([{"pid": 3, "process": "ray_client_server", "address": "127.0.0.1", "port": 10001}],
     "every Ray socket of this node listens on loopback only: nothing to try from outside"),
], ids=["no socket listed", "loopback only"])
def test_nothing_to_try_is_not_probed(sockets, reason):
    """A listing that found nothing (Ray down, or another user's processes unreadable) proves nothing."""
    result = exposure_result(probes(("PROBE", None)), sockets, "198.18.0.11", exposure_probers(["PROBE"], OUTSIDE, NODES))
    assert result["verdict"] == "not probed" and result["not_probed"] == reason


def test_a_prober_that_printed_no_json_fails_clearly():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="PROBE printed no JSON"):
        exposure_result({"results": [{"item": {"name": "PROBE"}, "stdout": "Traceback"}]}, SOCKETS, "198.18.0.11",
                        exposure_probers(["PROBE"], OUTSIDE, NODES))


# --- the tables and the JUnit case ------------------------------------------------------------------

def results_both_ways():
    plan = exposure_probers(["PROBE"], {"own": [], "source": {"198.18.0.11": "198.18.0.1", "198.18.0.12": None}}, NODES)
    targets = exposure_targets(SOCKETS, "198.18.0.11")
    return plan, {"ALPHA": exposure_result(probes(("PROBE", silent(targets)), ("controller", silent(targets))),
                                           SOCKETS, "198.18.0.11", plan),
                  "BETA": exposure_result(probes(("PROBE", None), ("controller", None)), [], "198.18.0.12", plan)}


def test_the_socket_table_says_not_probed_where_nobody_tried():
    """The old table said "closed" for every socket nobody had tried."""
    _, results = results_both_ways()
    rows = exposure_table({"ALPHA": SOCKETS[:3], "BETA": [dict(SOCKETS[1])]}, results)
    assert [(r["node"], r["port"], r["from_outside"]) for r in rows] == [
        ("ALPHA", 6380, "closed"), ("ALPHA", 6381, "closed"), ("ALPHA", 10001, "-"), ("BETA", 6381, "not probed")]


def test_the_summary_names_the_probers_of_each_node_and_why_one_was_not_probed():
    plan, results = results_both_ways()
    rows = exposure_summary(results)
    assert rows == [{"node": "ALPHA", "address": "198.18.0.11", "ports": 2, "probed_by": "PROBE, controller",
                     "verdict": "closed"},
                    {"node": "BETA", "address": "198.18.0.12", "ports": 0, "probed_by": "-", "verdict": "not probed"}]
    assert exposure_notes(plan, results) == [
        "The controller probed too, from 198.18.0.1.",
        "Not probed, so not shown closed (skipped in reports/verify.xml): BETA: "
        "no listening Ray socket of this cluster found on this node."]


def test_a_node_not_probed_is_a_skipped_junit_case_with_the_reason():
    _, results = results_both_ways()
    cases = {(c["classname"], c["name"]): c for c in verify_cases([], [], {"ALPHA": None, "BETA": None}, results, "ALPHA")}
    alpha, beta = cases[("saf.verify.port_exposure", "ALPHA")], cases[("saf.verify.port_exposure", "BETA")]
    assert alpha["failure"] is None and alpha["skipped"] is None
    assert alpha["properties"] == {"probed_by": "PROBE, controller", "ports": 2}
    assert beta["failure"] is None
    assert beta["skipped"] == "not probed: no listening Ray socket of this cluster found on this node"


# --- the controller's own addresses -------------------------------------------------------------------

def test_local_addresses_tells_an_address_of_this_machine_from_another():
    proc = subprocess.run([sys.executable, str(LOCAL_ADDRESSES), "127.0.0.1", "192.0.2.1"],
                          capture_output=True, text=True, timeout=30, check=True)
    view = json.loads(proc.stdout)
    assert view["own"] == ["127.0.0.1"]  # 192.0.2.1 (TEST-NET-1) is nobody's
    assert view["source"]["127.0.0.1"] == "127.0.0.1"
    assert set(view["source"]) == {"127.0.0.1", "192.0.2.1"}


# --- the role, through ansible-playbook over a local connection -----------------------------------

def run_exposure(tmp_path: Path, addresses: dict, sockets: list, probe: bool = False, extra: tuple = ()):
    """verify.yml --tags exposure on HEAD and WORKER (local connection, at ``addresses``), whose Ray
    sockets are ``sockets``; with ``probe``, PROBE (local connection too) is in saf_probes."""
    (tmp_path / "sockets.json").write_text(json.dumps(sockets))
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f"#!/bin/sh\ncat {tmp_path / 'sockets.json'}\n")  # stands in for ray_sockets.py
    (venv / "python").chmod(0o755)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"saf_cluster": {
        "vars": dict(local, saf_venv_dir=str(tmp_path / "venv"), saf_root_dir=str(tmp_path / "saf"),
                     saf_ray_temp_dir=str(tmp_path / "saf" / "ray")),
        "children": {"ray_head": {"hosts": {"HEAD": {"saf_node_ip": addresses["HEAD"], "saf_node_hostname": "HEAD.local"}}},
                     "ray_workers": {"hosts": {"WORKER": {"saf_node_ip": addresses["WORKER"],
                                                          "saf_node_hostname": "WORKER.local"}}}}}}
    if probe:
        inventory["saf_probes"] = {"hosts": {"PROBE": local}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(REPO / "verify.yml"),
            "--tags", "exposure", "-e", "ray_port_exposure_timeout=1", *extra]
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr


RAY = [{"pid": 1, "process": "raylet", "address": "0.0.0.0", "port": 47001},
       {"pid": 2, "process": "dashboard", "address": "127.0.0.1", "port": 47002}]


def test_role_probes_from_a_controller_outside_the_cluster(tmp_path):
    # 192.0.2.0/24 (TEST-NET-1): addresses the controller does not hold, where nothing answers.
    code, out = run_exposure(tmp_path, {"HEAD": "192.0.2.11", "WORKER": "192.0.2.12"}, RAY)
    assert code == 0, out
    assert "HEAD -> localhost] => (item=controller)" in out, out
    assert "HEAD: no Ray port answered outside the cluster. Tried 1 port(s) from controller." in out, out
    assert "The controller probed too, from " in out, out
    assert "not probed" not in out, out


def test_role_without_any_prober_says_not_probed_and_passes_nothing(tmp_path):
    # 127.0.0.0/8 is the controller's own: it is the cluster's node, and there is no probe host.
    code, out = run_exposure(tmp_path, {"HEAD": "127.0.0.11", "WORKER": "127.0.0.12"}, RAY)
    assert code == 0, out
    assert "no Ray port answered outside the cluster" not in out, out
    assert "(item=controller)" not in out, out
    assert "The controller did not probe: it is a cluster node (it holds HEAD's address 127.0.0.11" in out, out
    assert "Not probed, so not shown closed (skipped in reports/verify.xml): HEAD, WORKER: no probe host" in out, out
    assert "closed" not in out.split("from_outside", 1)[1].split("TASK", 1)[0], out


def test_role_left_without_the_controller_by_setting(tmp_path):
    code, out = run_exposure(tmp_path, {"HEAD": "192.0.2.11", "WORKER": "192.0.2.12"}, RAY,
                             extra=("-e", "ray_port_exposure_from_controller=false"))
    assert code == 0, out
    assert "The controller did not probe: ray_port_exposure_from_controller is false." in out, out
    assert "no Ray port answered outside the cluster" not in out, out


def test_role_fails_naming_the_probe_host_a_port_answered(tmp_path):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.11", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        code, out = run_exposure(tmp_path, {"HEAD": "127.0.0.11", "WORKER": "127.0.0.12"},
                                 [{"pid": 1, "process": "raylet", "address": "0.0.0.0", "port": port}], probe=True)
    finally:
        listener.close()
    assert code != 0, out
    assert f"HEAD: Ray's 127.0.0.11:{port} answered PROBE, a host outside the cluster." in out, out
    assert "WORKER: no Ray port answered outside the cluster. Tried 1 port(s) from PROBE." in out, out
