# -*- coding: utf-8 -*-
"""`tailscale ping` proves the tunnel, not Ray's ports: it passes while Tailscale ACLs or a node's
firewall block TCP to a service port (tailscale/tailscale#17490, #4882). saf_tailscale_check says so
in its result (``ping_scope``), and roles/tailscale_network prints it under the ping table, pointing
to verify.yml's port checks.

The module runs against ``tests/doubles/bin/tailscale`` (a TEST DOUBLE of the CLI), as in
test_saf_tailscale_check.py; the role through ``ansible-playbook`` over a local connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

import saf_tailscale_check
from module_harness import patch_exit_fail  # noqa: F401  (a fixture)
from test_saf_tailscale_check import FakeTailscale, fixture, python_only_path, run, warnings  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def assert_says_tunnel_only(text):
    flat = " ".join(text.split())
    assert "tailscale ping proves the tunnel between the nodes only, not Ray's ports" in flat, text
    assert "Tailscale ACLs (grants) or a node's firewall block TCP" in flat, text
    assert "tailscale/tailscale#17490, #4882" in flat, text
    assert "verify.yml's MLX probe fails when a worker cannot be reached on them" in flat, text


def test_the_result_says_what_the_ping_proves(tmp_path, python_only_path, patch_exit_fail, warnings):  # noqa: F811
    fake = FakeTailscale(str(tmp_path / "fakebin"))
    fake.scenario(fixture("status_running.json"), ping={"beta": {"path": "direct"}})
    failed, result = run(fake)
    assert failed is False, result.get("msg")
    assert result["ping"][0]["path"] == "direct"
    assert result["ping_scope"] == saf_tailscale_check.PING_SCOPE
    assert_says_tunnel_only(result["ping_scope"])
    assert "ping_scope" in yaml.safe_load(saf_tailscale_check.RETURN)


def test_the_role_prints_it_under_the_ping_table(tmp_path):
    """ALPHA checks the tailnet (the double answers as ALPHA's Tailscale; --limit ALPHA, BETA is only
    pinged); the play's summary is the table, then the sentence."""
    fake = FakeTailscale(str(tmp_path / "fakebin"))
    fake.scenario(fixture("status_running.json"), ping={"beta": {"path": "direct"}})
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "saf_tailscale_cli": fake.path, "saf_root_dir": str(tmp_path / "saf")}
    inventory = {"saf_cluster": {"vars": common, "children": {
        "ray_head": {"hosts": {"ALPHA": {"saf_node_ip": "100.64.0.11", "saf_tailscale_name": "alpha"}}},
        "ray_workers": {"hosts": {"BETA": {"saf_node_ip": "100.64.0.12", "saf_tailscale_name": "beta"}}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    # With facts, as in site.yml's second play.
    playbook = [{"name": "Check the tailnet", "hosts": "saf_cluster", "gather_facts": True, "gather_subset": ["min"],
                 "roles": [{"role": "tailscale_network"}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook))
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), "--limit", "ALPHA",
                           str(tmp_path / "play.yml")], cwd=REPO, capture_output=True, text=True, timeout=180,
                          check=False, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    summary = out.split("TASK [tailscale_network : Show how the nodes reach each other]")[1].split("PLAY RECAP")[0]
    lines = [line.strip() for line in summary.splitlines()]
    # One line each (the callback prints a multi-line msg as a YAML block): header, rule, row, blank, sentence.
    header = lines.index("from   to    address      path    latency_ms  pongs  via")
    assert lines[header + 2].startswith("ALPHA  BETA  100.64.0.12  direct"), out
    assert lines[header + 3] == "" and lines[header + 4].startswith("tailscale ping proves the tunnel"), out
    assert_says_tunnel_only(lines[header + 4])
