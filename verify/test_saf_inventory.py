"""Each node is the machine the inventory says it is: the hostname the verify module checks
(saf_node_hostname, e.g. BETA.local) and the address Ray binds and advertises (saf_node_ip)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.inventory


def test_node_reports_its_inventory_hostname(host, name, wanted):
    hostname = host.check_output("hostname")
    assert hostname == wanted["saf_node_hostname"], f"{name}: reports hostname {hostname!r}"


def test_node_holds_its_inventory_address(host, name, wanted):
    command = "ifconfig -a" if host.system_info.type == "darwin" else "ip -o -4 addr show"
    addresses = set(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)", host.check_output(command)))
    assert wanted["saf_node_ip"] in addresses, f"{name}: saf_node_ip {wanted['saf_node_ip']} is not one of {sorted(addresses)}"
