"""The shipped inventories parse, and the sample Mac inventory pins its interpreters.

``ansible-inventory --list`` and ``ansible-playbook --syntax-check`` are Ansible's own parsers;
the Mac inventory must never let Ansible discover ``/usr/bin/python3`` (a stub on a Mac without
the developer tools).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def studio():
    proc = ansible("ansible-inventory", "-i", "inventory/studio", "--list")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_studio_groups(studio):
    assert studio["ray_head"]["hosts"] == ["ALPHA"]
    assert studio["ray_workers"]["hosts"] == ["BETA"]


@pytest.mark.parametrize("host", ["ALPHA", "BETA"])
def test_studio_interpreter_is_pinned_and_absolute(studio, host):
    interpreter = studio["_meta"]["hostvars"][host]["ansible_python_interpreter"]
    assert interpreter.startswith("/") and interpreter != "/usr/bin/python3"
    assert "auto" not in interpreter


@pytest.mark.parametrize("inventory", ["inventory/studio", "inventory/lab"])
def test_playbooks_pass_syntax_check(inventory):
    proc = ansible("ansible-playbook", "-i", inventory, "--syntax-check", "site.yml", "verify.yml",
                   "playbooks/reset.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
