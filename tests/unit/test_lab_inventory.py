"""The lab's inventory script (inventory/lab/hosts.py): as many cluster hosts as the lab runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "inventory" / "lab"))

import hosts  # noqa: E402


def test_three_hosts_make_alpha_the_head_and_the_others_workers():
    inventory = hosts.inventory(3)
    assert inventory["ray_head"]["hosts"] == ["ALPHA"]
    assert inventory["ray_workers"]["hosts"] == ["BETA", "GAMMA"]
    assert inventory["saf_probes"]["hosts"] == ["PROBE"]
    assert inventory["_meta"]["hostvars"]["GAMMA"] == {"saf_node_ip": "198.18.0.13", "saf_node_hostname": "GAMMA.local"}
    assert "saf_node_hostname" not in inventory["_meta"]["hostvars"]["PROBE"]  # never in the cluster
    assert inventory["lab"]["children"] == ["saf_cluster", "saf_probes"]


def test_the_running_lab_decides_then_the_variable_then_two(tmp_path):
    record = tmp_path / "lab.json"
    assert hosts.cluster_count(record, {}) == 2
    assert hosts.cluster_count(record, {"SAF_LAB_HOSTS": "4"}) == 4
    record.write_text(json.dumps({"cluster_hosts": 3, "hosts": {}}))
    assert hosts.cluster_count(record, {"SAF_LAB_HOSTS": "4"}) == 3


@pytest.mark.parametrize("value", ["0", "7", "three"])
def test_a_bad_host_count_is_refused_naming_it(tmp_path, value):
    with pytest.raises(ValueError, match=f"SAF_LAB_HOSTS: host count must be 1..6, got '{value}'"):
        hosts.cluster_count(tmp_path / "lab.json", {"SAF_LAB_HOSTS": value})


def test_ansible_reads_it_as_a_script_inventory():
    proc = subprocess.run([str(REPO / "inventory" / "lab" / "hosts.py"), "--list"], capture_output=True, text=True,
                          timeout=60, check=True)
    listed = json.loads(proc.stdout)
    assert listed["ray_head"]["hosts"] == ["ALPHA"] and "BETA" in listed["ray_workers"]["hosts"]
    assert subprocess.run([str(REPO / "inventory" / "lab" / "hosts.py"), "--host", "BETA"], capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip() == "{}"


def test_saf_lab_probes_0_leaves_the_controller_as_the_only_prober():
    inventory = hosts.inventory(2, probes=False)
    assert inventory["saf_probes"]["hosts"] == []
    assert inventory["saf_cluster"] == {"children": ["ray_head", "ray_workers"]}
