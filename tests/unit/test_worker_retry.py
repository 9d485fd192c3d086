# -*- coding: utf-8 -*-
"""Why site.yml's worker plays are not any_errors_fatal, and what stops the run instead.

ansible-core 2.19's linear strategy, on any failed result in an any_errors_fatal play, marks every
other host failed: a host inside the same block is pushed into the rescue (a healthy worker would
be restarted), and a host outside it (a worker with nothing to restart) leaves the play silently,
so the run exits 2 with a clean recap (ansible/ansible#83292, #87308; fixed upstream by #87374,
not in 2.19). The first test pins that behaviour of the pinned ansible-core: when it stops
holding, site.yml's worker plays can go back to any_errors_fatal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "worker_retry.yml"


def run(tmp_path: Path, any_errors_fatal: bool, fail_always: bool = False):
    """HEAD, and workers W1 (nothing to restart), W2 and W3 (restarted; W3's first start fails)."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    workers = {name: {"saf_node_ip": f"198.18.0.{12 + i}", "saf_node_hostname": f"{name}.local"}
               for i, name in enumerate(["W1", "W2", "W3"])}
    inventory = {"saf_cluster": {"vars": local, "children": {
        "ray_head": {"hosts": {"HEAD": {"saf_node_ip": "198.18.0.11", "saf_node_hostname": "HEAD.local"}}},
        "ray_workers": {"hosts": workers}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    extra = {"saf_test_restart": ["W2", "W3"],
             "saf_test_fail_first": "W3", "saf_test_fail_always": fail_always,
             "saf_root_dir": str(tmp_path / "saf"), "saf_ray_temp_dir": str(tmp_path / "saf" / "ray")}
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(extra))
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ANY_ERRORS_FATAL=str(any_errors_fatal))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"),
                           "-e", f"@{tmp_path / 'extra.yml'}", str(PLAYBOOK)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def test_ansible_core_any_errors_fatal_drops_a_worker_outside_a_rescued_block(tmp_path):
    code, out = run(tmp_path, any_errors_fatal=True)
    assert code == 2, out
    assert "end of play: W1" not in out  # W1 had nothing to restart, and left the play
    assert "start on W2 (retry)" in out  # W2 had started fine, and was started again
    # W1 never failed a task; all_started.yml is what names it
    assert "Ray did not start on W1, W2 (see the failure above)" in out


def test_without_it_a_rescued_retry_touches_no_other_worker_and_the_run_goes_on(tmp_path):
    code, out = run(tmp_path, any_errors_fatal=False)
    assert code == 0, out
    assert all(f"end of play: {name}" in out for name in ("W1", "W2", "W3")), out
    assert "start on W3 (retry)" in out and "start on W2 (retry)" not in out
    assert "the run went on" in out


def test_a_worker_that_never_starts_stops_the_run_naming_it(tmp_path):
    code, out = run(tmp_path, any_errors_fatal=False, fail_always=True)
    assert code == 2, out
    assert "Ray did not start on W3 (see the failure above)" in out
    assert "the run went on" not in out


def test_the_site_worker_play_checks_all_started_after_each_start_and_is_not_any_errors_fatal():
    (found,) = [p for p in yaml.safe_load((REPO / "site.yml").read_text()) if p["hosts"] == "ray_workers"]
    assert "any_errors_fatal" not in found
    included = [task.get("ansible.builtin.include_role", {}) for task in found["post_tasks"]]
    checks = [i for i, role in enumerate(included) if role == {"name": "ray_node", "tasks_from": "all_started.yml"}]
    (wait,) = [i for i, role in enumerate(included) if role.get("tasks_from") == "wait.yml"]
    # the first start (roles:) and the restart of dropped workers (inside wait.yml) are each checked
    assert checks and checks[0] < wait < checks[-1], included
