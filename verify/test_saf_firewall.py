"""Ray's ports admit only the cluster's nodes and loopback (roles/cluster_firewall), read from the
node's packet filter: the nftables table ``inet saf_ray`` on Linux, the pf anchor ``org.saf.ray`` on
macOS (reading pf needs root: run testinfra with ``--sudo`` when the SSH user is not root).

That the rules also work, that no Ray port answers a host outside the cluster, is what verify.yml's
exposure play (roles/ray_port_exposure) shows by trying the ports from a probe host.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.firewall

# Every port the firewall must name (roles/saf/defaults/main.yml), besides the worker range.
PORT_VARS = [
    "saf_ray_gcs_port", "saf_ray_node_manager_port", "saf_ray_object_manager_port",
    "saf_ray_runtime_env_agent_port", "saf_ray_dashboard_agent_grpc_port", "saf_ray_metrics_export_port",
    "saf_ray_dashboard_agent_port", "saf_ray_client_server_port", "saf_ray_autoscaler_metrics_port",
    "saf_ray_dashboard_metrics_port", "saf_ray_dashboard_port",
]


@pytest.fixture(scope="module")
def firewall(host, name, wanted):
    """The node's rules for Ray: (addresses admitted, ports guarded, rule text)."""
    if not wanted["saf_firewall_enabled"]:
        pytest.skip(f"{name}: saf_firewall_enabled is false, SAF leaves the packet filter alone")
    if host.system_info.type == "darwin":
        text = host.check_output("pfctl -a org.saf.ray -sr")
        return None, None, text
    table = host.run("nft -j list table inet saf_ray")
    assert table.rc == 0, f"{name}: no nftables table inet saf_ray: {table.stderr.strip()}"
    sets = {item["set"]["name"]: item["set"].get("elem", [])
            for item in json.loads(table.stdout)["nftables"] if "set" in item}
    ports = {tuple(e["range"]) if isinstance(e, dict) else e for e in sets.get("ray_ports", [])}
    return set(sets.get("cluster_nodes", [])), ports, host.check_output("nft list chain inet saf_ray input")


def test_every_cluster_node_and_only_those_are_admitted(name, wanted, firewall):
    admitted, _, text = firewall
    if admitted is None:  # pf: one pass rule per admitted address
        assert all(f"from {address} to any" in text for address in wanted["cluster_addresses"]), text
        return
    assert admitted == set(wanted["cluster_addresses"]), f"{name}: admits {sorted(admitted)}"
    assert "tcp dport @ray_ports ip saddr @cluster_nodes accept" in text, f"{name}:\n{text}"


@pytest.mark.parametrize("port_var", PORT_VARS)
def test_each_ray_port_is_guarded(name, wanted, firewall, port_var):
    _, ports, text = firewall
    port = wanted[port_var]
    if ports is None:
        assert f"block drop in quick proto tcp from any to any port = {port}" in text, f"{name}: {port_var} {port}\n{text}"
        return
    assert port in ports, f"{name}: {port_var} {port} is not in the guarded ports {sorted(map(str, ports))}"


def test_the_worker_port_range_is_guarded(name, wanted, firewall):
    _, ports, text = firewall
    low, high = wanted["saf_ray_min_worker_port"], wanted["saf_ray_max_worker_port"]
    if ports is None:
        assert f"port {low}:{high}" in text, f"{name}:\n{text}"
        return
    assert (low, high) in ports, f"{name}: worker ports {low}-{high} are not guarded: {sorted(map(str, ports))}"


def test_everything_else_to_the_ray_ports_is_dropped(name, firewall):
    admitted, _, text = firewall
    if admitted is None:
        assert "block drop in quick proto tcp" in text, text
        return
    rules = [line.strip() for line in text.splitlines() if "dport @ray_ports" in line]
    assert rules and rules[-1].endswith("drop") and "saddr" not in rules[-1], f"{name}: the last rule is not a drop:\n{text}"
