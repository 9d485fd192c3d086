"""The secure profile: newer pins (Python 3.11, Ray 2.52) with Ray's token authentication on.

The same roles run with ``-e @profiles/secure-lab.yml``: a driver without the cluster's token is
refused by the GCS, SAF's own drivers (the membership wait, the MLX probe) pass with it, and the
token never shows in Ansible's output. Afterwards site.yml without the profile switches the cluster
back to the default pins (their venvs stay side by side).
"""

from __future__ import annotations

import json

import pytest

from labkit import LAB_PYTHON_NEXT, REPO, lab_exec, run_playbook

PROFILE = ["-e", "@profiles/secure-lab.yml"]
VENV = f"/opt/saf/venvs/py{LAB_PYTHON_NEXT['version']}-ray2.52.1-mlx0.29.1"
CONNECT = ("import ray, sys\n"
           "try:\n"
           "    ray.init(address='198.18.0.11:6380', log_to_driver=False)\n"
           "    print('CONNECTED', len(ray.nodes()))\n"
           "except Exception as exc:\n"
           "    print('REFUSED', type(exc).__name__, exc)\n"
           "    sys.exit(3)\n")


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return tmp_path_factory.mktemp("secure") / "ray-auth-token"


@pytest.fixture(scope="module")
def secure_site(lab, token_file):
    """site.yml with the secure profile (and afterwards the default pins again)."""
    env = {"SAF_RAY_AUTH_TOKEN_FILE": str(token_file)}
    run = run_playbook("site.yml", *PROFILE, env=env)
    yield run, env
    restored = run_playbook("site.yml")
    assert restored.returncode == 0, f"site.yml did not switch back to the default pins:\n{restored}"


def test_site_and_verify_pass_with_token_auth(secure_site, token_file):
    run, env = secure_site
    assert run.returncode == 0, str(run)
    verify = run_playbook("verify.yml", *PROFILE, env=env)
    assert verify.returncode == 0, str(verify)
    report = json.loads((REPO / "reports" / "verify.json").read_text())
    assert [(w["executed_on"], w["verdict"]) for w in report["workers"]] == [("BETA.local", "PASS")]
    assert report["workers"][0]["versions"]["ray"] == "2.52.1"
    token = token_file.read_text().strip()
    assert len(token) == 48 and token_file.stat().st_mode & 0o077 == 0
    assert token not in run.output and token not in verify.output


def test_a_driver_without_the_token_is_refused(secure_site):
    proc = lab_exec("ALPHA", f"{VENV}/bin/python", "-", input=CONNECT, timeout=120)
    assert proc.returncode == 3 and "REFUSED" in proc.stdout, proc.stdout + proc.stderr
    assert "auth" in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def test_a_driver_with_a_wrong_token_is_refused(secure_site):
    proc = lab_exec("ALPHA", "env", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN=" + "x" * 48,
                    f"{VENV}/bin/python", "-", input=CONNECT, timeout=120)
    assert proc.returncode == 3 and "REFUSED" in proc.stdout, proc.stdout + proc.stderr


def test_a_driver_with_the_token_connects(secure_site):
    proc = lab_exec("ALPHA", "env", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=/opt/saf/ray/auth-token",
                    f"{VENV}/bin/python", "-", input=CONNECT, timeout=120)
    assert proc.returncode == 0 and "CONNECTED 2" in proc.stdout, proc.stdout + proc.stderr


def test_the_node_token_file_is_private(secure_site):
    proc = lab_exec("BETA", "stat", "-c", "%a %U", "/opt/saf/ray/auth-token")
    assert proc.stdout.split() == ["600", "root"], proc.stdout
