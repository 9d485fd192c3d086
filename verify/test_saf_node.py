"""What every SAF node must look like from outside once site.yml has run."""

from __future__ import annotations

import json
import shlex

import pytest


def test_interpreter_is_the_pinned_release(host, record):
    version = host.check_output(f"{shlex.quote(record['interpreter'])} -c 'import platform; print(platform.python_version())'")
    assert version == record["runtime"]["python"]


def test_venv_imports_ray_and_mlx_at_the_pinned_versions(host, record):
    script = "import json, platform, ray, mlx.core as mx; print(json.dumps([platform.python_version(), ray.__version__, mx.__version__]))"
    seen = json.loads(host.check_output(f"{record['venv']}/bin/python -c {shlex.quote(script)}"))
    assert seen == [record["runtime"]["python"], record["runtime"]["ray"], record["runtime"]["mlx"]]


def test_raylet_runs_with_the_recorded_address(host, record):
    raylet = host.process.get(comm="raylet")
    assert f"--node_ip_address={record['node_ip']}" in raylet.args
    assert f"--gcs-address={record['gcs_address']}" in raylet.args
    assert raylet.user == host.user().name


def test_head_serves_the_gcs_on_its_address_and_the_dashboard_on_loopback(host, record):
    if not record["head"]:
        pytest.skip(f"{host.backend.hostname} is a worker node: no GCS, no dashboard")
    port = record["gcs_address"].rsplit(":", 1)[1]
    listening = host.socket.get_listening_sockets()
    assert any(s.endswith(f":{port}") for s in listening), listening
    dashboard = [arg for arg in record["argv"] if arg.startswith("--dashboard-host=")]
    assert dashboard == ["--dashboard-host=127.0.0.1"]
    assert host.socket("tcp://127.0.0.1:8265").is_listening
    assert not host.socket(f"tcp://{record['node_ip']}:8265").is_listening


def raylet_environ(host) -> list:
    """The environment the raylet runs with, as NAME=value strings."""
    pid = host.process.get(comm="raylet").pid
    if host.system_info.type == "darwin":
        return host.check_output(f"ps -E -ww -o command= -p {pid}").split()
    return host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()


def test_ray_start_ran_with_the_macos_cluster_switch(host):
    # The switch changes nothing on Linux, so look at what ran: the raylet's environment.
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1" in raylet_environ(host)


def test_rays_version_check_is_not_switched_off(host):
    # Parity is the fix: Ray's own check of Python and Ray versions stays on.
    switch = "RAY_IGNORE_" + "VERSION_MISMATCH"
    assert [v for v in raylet_environ(host) if v.startswith(switch + "=")] == []
