"""The testinfra specs in verify/ never pass on nothing: here, with fake fixtures, without a node."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

VERIFY = Path(__file__).resolve().parents[2] / "verify"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"saf_verify_{name}", VERIFY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # the specs' own marks are registered by verify/conftest.py only
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        spec.loader.exec_module(module)
    return module


class Proc:
    """What the specs read of a process (verify/conftest.py's Proc)."""

    def __init__(self, pid: int, program: str):
        self.pid, self.program = pid, program


node = load("test_saf_node")
RAYLET = [Proc(42, "raylet")]


def test_the_version_check_spec_fails_when_the_environment_was_not_read():
    """macOS `ps -E` prints another user's process without its environment, silently: the old spec
    found no switch in nothing and passed."""
    unread = lambda pid: ["/opt/saf/venv/lib/python3.9/site-packages/ray/core/src/ray/raylet/raylet"]  # noqa: E731
    with pytest.raises(AssertionError, match="cannot read the raylet's environment"):
        node.test_rays_version_check_is_not_switched_off("BETA", RAYLET, unread)


def test_the_version_check_spec_passes_on_a_read_environment_and_fails_on_the_switch():
    env = ["PATH=/opt/saf/venv/bin:/usr/bin", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1"]
    node.test_rays_version_check_is_not_switched_off("BETA", RAYLET, lambda pid: env)
    node.test_ray_start_ran_with_the_macos_cluster_switch("BETA", RAYLET, lambda pid: env)
    switched = env + ["RAY_IGNORE_" + "VERSION_MISMATCH=1"]
    with pytest.raises(AssertionError):
        node.test_rays_version_check_is_not_switched_off("BETA", RAYLET, lambda pid: switched)


def test_connection_vars_reach_testinfra_resolved():
    """testinfra gets what a play would use: the molecule inventory's templated ansible_host and
    key paths (group_vars/lab.yml) come back as the address and absolute paths, no template left."""
    sys.path.insert(0, str(VERIFY))
    import saf_connection

    resolved = saf_connection.resolve_connection_vars(str(VERIFY.parent / "inventory" / "molecule" / "node.yml"))
    delta = resolved["DELTA"]
    assert delta["ansible_host"] == "198.18.0.14"
    assert delta["ansible_user"] == "root"
    key = Path(delta["ansible_ssh_private_key_file"])
    assert key.is_absolute() and key.resolve() == (VERIFY.parent / ".lab" / "id_ed25519").resolve()
    assert "StrictHostKeyChecking=yes" in delta["ansible_ssh_common_args"]
    assert not any("{{" in str(value) for value in delta.values()), delta


def test_a_lab_host_is_reached_over_ssh_at_its_resolved_address():
    """tests/lab's hosts: testinfra's SSH backend with the address, user, key and options Ansible
    resolves, read at each call; a host the inventory lacks is named."""
    sys.path.insert(0, str(VERIFY))
    import saf_connection

    inventory = str(VERIFY.parent / "inventory" / "molecule" / "node.yml")
    backend = saf_connection.ssh_host(inventory, "DELTA").backend
    assert backend.NAME == "ssh" and backend.host.name == "198.18.0.14" and backend.host.user == "root"
    assert Path(backend.ssh_identity_file).resolve() == (VERIFY.parent / ".lab" / "id_ed25519").resolve()
    assert "StrictHostKeyChecking=yes" in backend.ssh_extra_args
    with pytest.raises(KeyError, match="GAMMA is not a host of the inventory"):
        saf_connection.ssh_host(inventory, "GAMMA")
