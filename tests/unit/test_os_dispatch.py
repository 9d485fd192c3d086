"""An OS no role knows gets a message naming the host and its OS, not a missing-file error.

The roles that load per-OS files (cluster_firewall's setup-<OS>.yml, node_env's vars/<OS>.yml) are
run on the controller over a local connection with a facts double (tests/unit/playbooks/library/
saf_test_os_facts.py) that reports SAF_TEST_OS as the OS.
"""

from __future__ import annotations

import os

import pytest

from test_role_argument_specs import REPO, run

LIBRARY = REPO / "tests" / "unit" / "playbooks" / "library"


@pytest.mark.parametrize("role, knows", [("cluster_firewall", "it knows Darwin (a pf anchor) and Linux (nftables)"),
                                         ("node_env", "known for Darwin (Apple silicon) and Linux")])
def test_an_unknown_os_fails_naming_the_host_and_the_os(tmp_path, monkeypatch, role, knows):
    monkeypatch.setenv("SAF_TEST_OS", "Plan9")
    monkeypatch.setenv("ANSIBLE_LIBRARY", f"{REPO / 'library'}{os.pathsep}{LIBRARY}")
    facts = {"ansible_facts_modules": ["ansible.builtin.setup", "saf_test_os_facts"], "ansible_facts_parallel": False}
    code, out = run(tmp_path, [(role, "main")], gather_facts=True, extra_vars=facts)
    assert code != 0, out
    flat = " ".join(out.split())
    assert f"HEAD: {role} has no" in flat and "for Plan9 (Plan9)" in flat, out
    assert knows in flat, out
    assert "Could not find or access" not in out, out
