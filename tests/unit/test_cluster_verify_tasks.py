"""roles/cluster_verify/tasks/main.yml itself, run by ansible-playbook over local connections with a
stand-in for saf_mlx_probe (a TEST DOUBLE that returns a scripted result and records its options).

Everything after the membership wait (which needs a Ray cluster) runs as the role has it: the probe's
options (growth, GPU resource), the dead worker's logs read on its node (files/worker_logs.py, on a
session directory in the shape Ray 2.49.2 leaves one), the rows, the reports, the per-size history,
the summary with each node's resources, and the verdict. Only the script's path is made absolute,
since the tasks run from a copy outside the role."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "cluster_verify"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
JOB = "0d000000"
DEAD = "ec0bb0bf3b0b94773a7e312a4b94e298539131dc3f998367b7c68a15"
BETA_ID = "b1" * 28
GAMMA_ID = "c1" * 28
ALPHA_ID = "a1" * 28

STUB = '''#!/usr/bin/python
# TEST DOUBLE of saf_mlx_probe: returns the scripted result, records the options it was given.
import json
from ansible.module_utils.basic import AnsibleModule

SPEC = dict(gcs_address=dict(), driver_node_ip=dict(), workers=dict(type='list', elements='dict'),
            matrix_size=dict(type='int'), min_seconds=dict(type='float'), max_matrix_bytes=dict(type='int'),
            gpu_resource=dict(), iterations=dict(type='int'), timeout=dict(type='float'),
            require_gpu=dict(type='bool'), min_working_set_bytes=dict(type='int'))


def main():
    module = AnsibleModule(argument_spec=SPEC, supports_check_mode=True)
    with open(%(params)r, 'w') as handle:
        json.dump(module.params, handle)
    with open(%(result)r) as handle:
        result = json.load(handle)
    module.exit_json(**result)


main()
'''


def probe_result():
    """BETA passed after growing to 8192; GAMMA's worker process died (WorkerCrashedError)."""
    resources = {"CPU": 2.0, "metal_gpu": 1.0, "memory": 8053063680.0, "node:198.18.0.12": 1.0}
    sizing = {"start": 1024, "min_seconds": 0.02, "max_bytes": 1073741824, "matrix_bytes": 805306368,
              "stopped_by": "floor", "trials": [{"matrix_size": 1024, "seconds": 0.0004},
                                                {"matrix_size": 8192, "seconds": 0.09}]}
    return {
        "changed": False, "job_id": JOB, "passed": False,
        "alive_nodes": [
            {"node_id": ALPHA_ID, "address": "198.18.0.11", "hostname": "ALPHA.local", "alive": True, "is_head": True,
             "resources": {"CPU": 2.0, "metal_gpu": 1.0}},
            {"node_id": BETA_ID, "address": "198.18.0.12", "hostname": "BETA.local", "alive": True, "is_head": False,
             "resources": resources},
            {"node_id": GAMMA_ID, "address": "198.18.0.13", "hostname": "GAMMA.local", "alive": True, "is_head": False,
             "resources": {"CPU": 2.0, "metal_gpu": 1.0}},
        ],
        "workers": [
            {"host": "BETA", "expected_hostname": "BETA.local", "passed": True, "executed_on": "BETA.local",
             "node_id": BETA_ID, "target_node_id": BETA_ID, "device": "Device(gpu, 0)", "gflops": 12215.9,
             "median_seconds": 0.09, "matrix_size": 8192, "sizing": sizing, "node_resources": resources,
             "versions": {"python": "3.9.23", "ray": "2.49.2", "mlx": "0.29.1"}},
            {"host": "GAMMA", "expected_hostname": "GAMMA.local", "passed": False, "target_node_id": GAMMA_ID,
             "node_resources": {"CPU": 2.0, "metal_gpu": 1.0}, "error_type": "WorkerCrashedError",
             "worker_died": True,
             "msg": f"GAMMA: the MLX probe task on Ray node {GAMMA_ID} (198.18.0.13) failed: its worker process "
                    "died: WorkerCrashedError: The worker died unexpectedly while executing this task. Check "
                    "python-core-worker-*.log files for more information."},
        ],
    }


def tasks_after_the_membership_wait():
    """The role's tasks without the first (the membership wait), the script called by its absolute path."""
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    assert tasks[0]["ansible.builtin.import_role"]["tasks_from"] == "wait.yml"
    for task in tasks:
        script = task.get("ansible.builtin.script")
        if script:
            script["cmd"] = script["cmd"].replace("worker_logs.py", str(ROLE / "files" / "worker_logs.py"), 1)
    return tasks[1:]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster_verify")
    library = tmp / "library"
    library.mkdir()
    (tmp / "probe.json").write_text(json.dumps(probe_result()))
    (library / "saf_mlx_probe.py").write_text(STUB % {"params": str(tmp / "params.json"),
                                                      "result": str(tmp / "probe.json")})
    (tmp / "tasks.yml").write_text(yaml.safe_dump(tasks_after_the_membership_wait(), sort_keys=False))
    # GAMMA's Ray session: the worker of job JOB that ran mlx_matmul_task died of SIGABRT.
    logs = tmp / "ray" / "session_2026-11-30_10-21-25_271804_509" / "logs"
    (logs / "events").mkdir(parents=True)
    (tmp / "ray" / "session_latest").symlink_to(logs.parent)
    for suffix, text in (("out", "starting\n"), ("err", "*** SIGABRT received at time=1796035209 on cpu 1 ***\n"
                                                        "Fatal Python error: Aborted\n")):
        (logs / f"worker-{DEAD}-ffffffff-18272.{suffix}").write_text(f":job_id:{JOB}\n:task_name:mlx_matmul_task\n{text}")
    venv = tmp / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "saf_venv_dir": str(tmp / "venv"), "saf_runtime_venv": str(tmp / "venv"),
              "saf_ray_temp_dir": str(tmp / "ray"), "saf_report_dir": str(tmp / "reports")}
    hosts = {"ALPHA": "198.18.0.11", "BETA": "198.18.0.12", "GAMMA": "198.18.0.13"}
    inventory = {"saf_cluster": {"children": {
        "ray_head": {"hosts": {"ALPHA": {"saf_node_ip": hosts["ALPHA"], "saf_node_hostname": "ALPHA.local", **common}}},
        "ray_workers": {"hosts": {name: {"saf_node_ip": hosts[name], "saf_node_hostname": f"{name}.local", **common}
                                  for name in ("BETA", "GAMMA")}},
    }}}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    ids = {"ALPHA": ALPHA_ID, "BETA": BETA_ID, "GAMMA": GAMMA_ID}
    members = [{"host": name, "address": address, "node_id": ids[name], "alive": True} for name, address in hosts.items()]
    playbook = [{"name": "cluster_verify after the membership wait", "hosts": "ray_head", "gather_facts": False,
                 "vars": {"ray_node_membership": {"ok": True, "nodes": members},
                          **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())},
                 "roles": [{"role": "saf"}],
                 "tasks": [{"name": "The role's tasks", "ansible.builtin.include_tasks": str(tmp / "tasks.yml")}]}]
    (tmp / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_LIBRARY=str(library),
               ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    extra = ["-e", "saf_verify_gpu_resource=metal_gpu", "-e", "saf_verify_min_seconds=0.05",
             "-e", "saf_verify_max_matrix_bytes=805306368", "-e", "saf_verify_min_working_set_gib=1.5"]
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp / "inventory.yml"), *extra, str(tmp / "play.yml")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False, env=env)
    return tmp, proc


def test_the_probe_gets_the_growth_settings_and_the_gpu_resource(run):
    tmp, proc = run
    params = json.loads((tmp / "params.json").read_text())
    assert (params["min_seconds"], params["max_matrix_bytes"], params["gpu_resource"]) == (0.05, 805306368,
                                                                                           "metal_gpu"), proc.stdout
    assert params["matrix_size"] == 1024
    assert params["min_working_set_bytes"] == 1610612736  # 1.5 GiB


def test_the_dead_workers_exit_and_log_lines_reach_the_report_and_the_verdict(run):
    tmp, proc = run
    assert proc.returncode != 0 and "Fail unless every worker passed" in proc.stdout, proc.stdout + proc.stderr
    report = json.loads((tmp / "reports" / "verify.json").read_text())
    beta, gamma = report["workers"]
    assert beta["passed"] and beta["resources"]["metal_gpu"] == 1.0 and beta["sizing"]["stopped_by"] == "floor"
    assert gamma["error_type"] == "WorkerCrashedError"
    assert gamma["message"].startswith("GAMMA: the MLX probe task on Ray node")
    assert "\nOn GAMMA: worker process 18272 (Ray worker ID %s) killed by SIGABRT" % DEAD in gamma["message"]
    assert "Fatal Python error: Aborted" in gamma["message"]
    assert gamma["worker_log"].startswith("On GAMMA: worker process 18272")
    assert "killed by SIGABRT" in proc.stdout  # the assert's failure message


def test_the_history_has_a_line_per_size_and_the_summary_the_size_and_each_nodes_resources(run):
    tmp, proc = run
    lines = [json.loads(line) for line in (tmp / "reports" / "gflops-history.jsonl").read_text().splitlines()]
    assert [(line["matrix_size"], line["gflops"]) for line in lines] == [(8192, {"BETA": 12215.9}), (1024, {})]
    summary = proc.stdout[proc.stdout.index("TASK [Show the summary]"):]
    assert "matrix_size" in summary and "8192" in summary
    assert "ALPHA  198.18.0.11  CPU 2, metal_gpu 1" in summary
    assert "BETA   198.18.0.12  CPU 2, memory 7.5 GiB, metal_gpu 1" in summary
    assert "GAMMA  198.18.0.13  CPU 2, metal_gpu 1" in summary
