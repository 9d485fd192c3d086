# -*- coding: utf-8 -*-
"""An error a module did not foresee comes back as a normal failed result (``fail_json`` with ``msg``
naming the host and the exception's text, ``exception`` the traceback), never as Ansible's MODULE
FAILURE without JSON. Each test makes one internal function raise.

saf_tailscale_check names the node by its inventory host (its peers entry), else by its hostname;
saf_ray_membership, which is not told its inventory name, by its hostname and driver address.
"""

from __future__ import annotations

import sys

import pytest

import saf_ray_membership
import saf_tailscale_check
from fake_ray_cluster import FakeRayCluster, make_node, node_id
from module_harness import AnsibleFailJson, patch_exit_fail, set_module_args  # noqa: F401  (a fixture)

PEERS = [{"name": "alpha", "host": "ALPHA", "address": "100.64.0.11"},
         {"name": "beta", "host": "BETA", "address": "100.64.0.12"}]


def boom(*args, **kwargs):
    raise KeyError("TailscaleIPs")


def fail_result(main, args):
    with set_module_args(args):
        with pytest.raises(AnsibleFailJson) as raised:
            main()
    return raised.value.args[0]


@pytest.fixture
def tailscale_runs(monkeypatch):
    """The CLI is found and answers `status --json` with a running node; no process is started."""
    monkeypatch.setattr(saf_tailscale_check, "find_cli", lambda *args: ("/opt/homebrew/bin/tailscale", "homebrew"))
    monkeypatch.setattr(saf_tailscale_check, "run_cli",
                        lambda argv, timeout: (0, '{"BackendState": "Running", "Self": {}, "Peer": {}}', "", False))


def test_tailscale_check_names_the_inventory_host(monkeypatch, patch_exit_fail, tailscale_runs):  # noqa: F811
    monkeypatch.setattr(saf_tailscale_check, "check_peers", boom)
    result = fail_result(saf_tailscale_check.main, {"self_name": "alpha", "peers": PEERS})
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == "ALPHA: saf_tailscale_check stopped on an unexpected error: KeyError: 'TailscaleIPs'"
    assert "Traceback" in result["exception"] and "check_peers" in result["exception"]
    assert result["problems"] == [result["msg"]] and result["searched"] == []


def test_tailscale_check_names_the_machine_without_a_matching_peer(monkeypatch, patch_exit_fail):  # noqa: F811
    monkeypatch.setattr(saf_tailscale_check, "_check_params", boom)
    monkeypatch.setattr(saf_tailscale_check.socket, "gethostname", lambda: "mac-studio-2.local")
    result = fail_result(saf_tailscale_check.main, {"self_name": "gamma", "peers": PEERS})
    assert result["msg"].startswith("mac-studio-2.local: saf_tailscale_check stopped on an unexpected error: KeyError")


@pytest.fixture
def cluster(monkeypatch):
    """A fake cluster (TEST DOUBLE, fake_ray_cluster.py) behind connect(); no Ray."""
    fake = FakeRayCluster([make_node(node_id("a1"), "192.0.2.1", "ALPHA.local", head=True)])
    monkeypatch.setattr(saf_ray_membership, "connect", lambda *args: fake)
    monkeypatch.setattr(saf_ray_membership, "import_ray", lambda: object())
    return fake


def test_ray_membership_names_the_host_and_keeps_the_result_the_roles_read(monkeypatch, patch_exit_fail,  # noqa: F811
                                                                          cluster):
    monkeypatch.setattr(saf_ray_membership, "wait_for_nodes", boom)
    monkeypatch.setattr(saf_ray_membership.socket, "gethostname", lambda: "ALPHA.local")
    stdout = sys.stdout
    expected = [{"host": "ALPHA", "address": "192.0.2.1"}, {"host": "BETA", "address": "192.0.2.2"}]
    result = fail_result(saf_ray_membership.main, {"gcs_address": "192.0.2.1:6380", "driver_node_ip": "192.0.2.1",
                                                   "expected": expected, "timeout": 2, "settle": 0})
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("ALPHA.local (driver 192.0.2.1): saf_ray_membership stopped on an unexpected error: "
                             "KeyError: 'TailscaleIPs'")
    assert "Traceback" in result["exception"] and "wait_for_nodes" in result["exception"]
    assert result["missing"] == ["ALPHA", "BETA"] and result["missing_addresses"] == ["192.0.2.1", "192.0.2.2"]
    assert sys.stdout is stdout  # the JSON goes to the real stdout, not to stderr
    assert cluster.shutdown_calls == 1
