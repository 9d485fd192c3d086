"""A node whose Python patch release differs stops site.yml before any `ray start`, anywhere.

The lab's nodes run the Python 3.9 the lab tool chose (LAB_PYTHON); Debian's own /usr/bin/python3.11
(3.11.2) on BETA stands in for the 3.9.23-vs-3.9.6 mismatch the Mac Studios had.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from labkit import LAB_PYTHON, raylet_running, run_playbook

pytestmark = pytest.mark.lab
OTHER_PYTHON = "/usr/bin/python3.11"


def interpreter_version(path: str) -> str:
    return subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()


@pytest.fixture(scope="module")
def stopped_cluster(lab):
    """Ray stopped on every lab node, so a start would be visible."""
    run = run_playbook("playbooks/reset.yml")
    assert run.returncode == 0, str(run)
    assert not raylet_running("ALPHA") and not raylet_running("BETA")


def override_inventory(tmp_path, **beta_vars) -> str:
    """An extra inventory source giving BETA host variables that win over the lab's group_vars."""
    path = tmp_path / "beta-override.yml"
    path.write_text(yaml.safe_dump({"saf_cluster": {"hosts": {"BETA": beta_vars}}}))
    return str(path)


def test_interpreter_of_the_wrong_release_fails_naming_both(stopped_cluster, tmp_path):
    other = interpreter_version(OTHER_PYTHON)
    extra = override_inventory(tmp_path, saf_python_interpreter=OTHER_PYTHON)

    run = run_playbook("-i", "inventory/lab", "-i", extra, "site.yml")

    assert run.returncode != 0, str(run)
    assert f"BETA: {OTHER_PYTHON} is Python {other}, want exactly {LAB_PYTHON['version']}" in run.output, str(run)
    assert "Start the Ray head node" not in run.output, str(run)
    assert not raylet_running("ALPHA") and not raylet_running("BETA")


def test_nodes_pinned_to_different_releases_fail_with_a_table(stopped_cluster, tmp_path):
    other = interpreter_version(OTHER_PYTHON)
    extra = override_inventory(tmp_path, saf_python_interpreter=OTHER_PYTHON, saf_python_version=other)

    run = run_playbook("-i", "inventory/lab", "-i", extra, "site.yml")

    assert run.returncode != 0, str(run)
    assert "Python releases differ between nodes" in run.output, str(run)
    table = [line for line in run.output.splitlines() if "ALPHA" in line or "BETA" in line]
    assert any(LAB_PYTHON["version"] in line and "ALPHA" in line for line in table), str(run)
    assert any(other in line and "BETA" in line and "differs" in line for line in table), str(run)
    assert "Start the Ray head node" not in run.output, str(run)
    assert not raylet_running("ALPHA") and not raylet_running("BETA")
