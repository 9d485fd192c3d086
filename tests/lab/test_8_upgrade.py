"""Lockstep upgrade and rollback on the lab cluster (playbooks/upgrade.yml, playbooks/rollback.yml).

The new runtime is a newer Ray with a newer Python: the lab's Python 3.11 (LAB_PYTHON_NEXT, as
LAB_PYTHON is for the lab's default; both chosen by the lab tool), Ray 2.52.1, MLX 0.29.1; its
lock is committed in locks/. It is
set the way an operator sets it, in the inventory (an extra -i file of host variables), never
with -e. Order matters: the upgrade passes, rollback.yml goes back on demand, then an upgrade whose
verification is made to fail ends on the old versions with verify.yml green.
"""

from __future__ import annotations

import pytest
import yaml

from labkit import LAB_PYTHON, LAB_PYTHON_NEXT, lab_host, put_file, read_report, run_playbook

pytestmark = pytest.mark.lab
OLD = {"python": LAB_PYTHON["version"], "ray": "2.49.2", "mlx": "0.29.1"}
NEW = {"python": LAB_PYTHON_NEXT["version"], "ray": "2.52.1", "mlx": "0.29.1"}
NEW_INTERPRETER = LAB_PYTHON_NEXT["interpreter"]
NEW_VENV = "/opt/saf/venvs/py{python}-ray{ray}-mlx{mlx}".format(**NEW)
OLD_VENV = "/opt/saf/venvs/py{python}-ray{ray}-mlx{mlx}".format(**OLD)


def runtime(versions: dict) -> str:
    return "Python {python}, Ray {ray}, MLX {mlx}".format(**versions)
NODES = ("ALPHA", "BETA")
# A fault in the new runtime only: Ray's worker processes (default_worker.py) on BETA exit at
# start, so the pinned task can never run there. The old venv has no such file.
WORKER_FAULT = f"{NEW_VENV}/lib/python3.11/site-packages/sitecustomize.py"
WORKER_FAULT_SOURCE = '''\
# Test fault (tests/lab/test_8_upgrade.py): Ray worker processes exit at start.
import os
import sys

if any(arg.endswith("default_worker.py") for arg in sys.argv):
    os._exit(17)
'''


@pytest.fixture(scope="module")
def new_runtime(tmp_path_factory, verified):
    """An extra inventory source that sets the new runtime on every node (host variables)."""
    path = tmp_path_factory.mktemp("upgrade") / "new-runtime.yml"
    host_vars = {"saf_python_version": NEW["python"], "saf_ray_version": NEW["ray"],
                 "saf_mlx_version": NEW["mlx"], "saf_python_interpreter": NEW_INTERPRETER}
    path.write_text(yaml.safe_dump({"all": {"hosts": {name: dict(host_vars) for name in NODES}}}))
    yield ["-i", "inventory/lab", "-i", str(path)]
    # Whatever happened, leave the lab on its default runtime, as site.yml makes it.
    for name in NODES:
        lab_host(name).run(f"rm -f {WORKER_FAULT}")
    restore = run_playbook("site.yml")
    assert restore.returncode == 0, f"site.yml did not restore the default runtime:\n{restore}"


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space: the YAML callback wraps long messages."""
    return " ".join(text.split())


def venv_link(name: str) -> str:
    return lab_host(name).check_output("readlink /opt/saf/venv")


def node_ids() -> dict:
    return {node["host"]: node["node_id"] for node in read_report()["cluster"]["nodes"]}


def assert_cluster_runs(runtime: dict) -> None:
    verify = run_playbook("verify.yml")
    assert verify.returncode == 0, str(verify)
    for row in read_report()["workers"]:
        assert row["passed"] and row["versions"]["ray"] == runtime["ray"], row
        assert row["versions"]["python"] == runtime["python"] and row["versions"]["mlx"] == runtime["mlx"], row


def test_upgrade_to_a_newer_ray_and_python_passes(new_runtime):
    assert_cluster_runs(OLD)  # the starting point, and this cluster's node IDs in the report
    before = node_ids()

    run = run_playbook(*new_runtime, "playbooks/upgrade.yml")

    assert run.returncode == 0, str(run)
    assert f"Upgrading from {runtime(OLD)} to {runtime(NEW)}" in flat(run.output)
    assert f"Every node runs {runtime(NEW)}, verified" in flat(run.output), str(run)
    assert "PLAY [Switch every node back to the previous venv]" in run.output  # rollback.yml's plays, skipped
    for name in NODES:
        assert venv_link(name) == NEW_VENV
        assert lab_host(name).file(f"{OLD_VENV}/bin/python").exists  # the old venv stays on disk
        assert lab_host(name).file("/opt/saf/venvs/previous.json").content_string.count('"ray": "2.49.2"') == 1
    after = node_ids()
    assert set(after) == set(before) and not set(after.values()) & set(before.values())  # every node restarted
    # verify.yml on the new versions (in the inventory, as an operator leaves them after an upgrade)
    verify = run_playbook(*new_runtime, "verify.yml")
    assert verify.returncode == 0, str(verify)
    assert all(row["versions"]["ray"] == NEW["ray"] for row in read_report()["workers"])


def test_rollback_on_demand_goes_back_without_a_rebuild(new_runtime):
    run = run_playbook("playbooks/rollback.yml")

    assert run.returncode == 0, str(run)
    assert f"Going back to {runtime(OLD)} from Python {NEW['python']}, Ray {NEW['ray']}" in flat(run.output), str(run)
    assert "Install the locked Ray" not in run.output and "Copy the wheelhouse" not in run.output  # no rebuild
    for name in NODES:
        assert venv_link(name) == OLD_VENV
        assert lab_host(name).file(f"{NEW_VENV}/bin/python").exists  # still there for the next try
    assert_cluster_runs(OLD)
    # and the default inventory finds nothing to change: the same runtime, the same Ray settings
    site = run_playbook("site.yml")
    assert site.returncode == 0, str(site)
    assert all(counts["changed"] == 0 for host, counts in site.recap.items() if host in NODES), str(site)


def test_upgrade_that_fails_verification_ends_on_the_old_versions(new_runtime):
    put_file("BETA", WORKER_FAULT, WORKER_FAULT_SOURCE)

    run = run_playbook(*new_runtime, "playbooks/upgrade.yml", "-e", "saf_verify_timeout=30")

    assert run.returncode != 0, str(run)
    failure = flat(run.output[run.output.index("TASK [Fail when the new runtime was rolled back]"):])
    assert f"The upgrade to {runtime(NEW)} failed" in failure, str(run)
    assert "BETA" in failure, str(run)
    assert f"back on the old versions, {runtime(OLD)}, and its verification passed" in failure, str(run)
    for name in NODES:
        assert venv_link(name) == OLD_VENV
    assert_cluster_runs(OLD)
