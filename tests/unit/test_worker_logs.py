"""roles/cluster_verify/files/worker_logs.py: the exit code or signal and the last log lines of a Ray
worker process that died running the probe, read on its node (lab finding 1).

The session directories are built in ``tmp_path`` in the shape Ray 2.49.2 leaves them (recorded on
Linux with a local Ray 2.49.2 whose task called ``os.abort()``, ``sys.exit(4)`` and ``os._exit(3)``):
``worker-<worker ID>-<job ID>-<pid>.out|err`` starting with ``:job_id:``/``:task_name:`` lines (the
job ID in the file name is ``ffffffff`` for a worker started before the job), abseil's and
faulthandler's lines in the ``.err`` and the core worker log after SIGABRT, and the raylet's
``RAY_WORKER_FAILURE`` events in ``logs/events/event_RAYLET.log``. IDs and times are made up."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "cluster_verify" / "files" / "worker_logs.py"
sys.path.insert(0, str(SCRIPT.parent))

import worker_logs  # noqa: E402

JOB = "0d000000"
TASK = "mlx_matmul_task"
ABORTED = "ec0bb0bf3b0b94773a7e312a4b94e298539131dc3f998367b7c68a15"
EXITED = "c8b92b3d090b7d6f42d5d90e50db25c196571ced3320f913ca7ab87d"
KILLED = "7442b645fc14c3f346a3bf8635b233c870de4ab65175a15e1e820d23"
IDLE = "2288c9ba902cd0ed3bae47ec8d4d70727782e63e695aa18b79440bc9"
NODE = "5153ca74a611b888523b396c3b508052a6e36ce5ec0312c08aafc291"

ABSL = ("*** SIGABRT received at time=1796035209 on cpu 1 ***\n"
        "PC: @     0x7f0db88a8eec  (unknown)  (unknown)\n"
        "    @     0x7f0db885a050   62564368  (unknown)\n")
FAULTHANDLER = ("Fatal Python error: Aborted\n\n"
                "Stack (most recent call first):\n"
                '  File "/opt/saf/venv/lib/python3.9/site-packages/mlx/core.py", line 1 in matmul\n')
CONNECTION_DROP = ("Worker unexpectedly exits with a connection error code 2. End of file. There are some potential "
                   "root causes. (1) The process is killed by SIGKILL by OOM killer due to high memory usage. (2) ray "
                   "stop --force is called. (3) The worker is crashed unexpectedly due to SIGSEGV or other unexpected "
                   "errors.")


def failure_event(worker_id, pid, detail):
    message = ("A worker died or was killed while executing a task by an unexpected system error. To troubleshoot "
               "the problem, check the logs for the dead worker. RayTask ID: a97e0d7ac296bdfd9e2f80497d499ef4e9a48672"
               f"01000000 Worker ID: {worker_id} Node ID: {NODE} Worker IP address: 198.18.0.12 Worker port: 11006 "
               f"Worker PID: {pid} Worker exit type: SYSTEM_ERROR Worker exit detail: {detail}")
    return json.dumps({"custom_fields": {"job_id": JOB, "node_id": NODE, "worker_id": worker_id},
                       "event_id": "59d134fbc3cbd5b70dfddfa950dd33363ba2", "host_name": "BETA",
                       "label": "RAY_WORKER_FAILURE", "message": message, "pid": "762", "severity": "ERROR",
                       "source_type": "RAYLET", "timestamp": 1796035209})


def worker(logs: Path, worker_id, pid, job_in_name=JOB, out="", err="", core="", task=TASK, job=JOB, mtime=None):
    """A worker's three files; ``out`` and ``err`` start with Ray's task markers."""
    markers = f":job_id:{job}\n:task_name:{task}\n"
    files = {f"worker-{worker_id}-{job_in_name}-{pid}.out": markers + out,
             f"worker-{worker_id}-{job_in_name}-{pid}.err": markers + err,
             f"python-core-worker-{worker_id}_{pid}.log": core or f"[2026-11-30 10:40:09,002 I {pid} {pid}] core_worker.cc:479: Adjusted worker niceness to 15\n"}
    for name, text in files.items():
        (logs / name).write_text(text)
        if mtime is not None:
            os.utime(logs / name, (mtime, mtime))


@pytest.fixture
def temp_dir(tmp_path):
    """saf_ray_temp_dir with one session (session_latest links to it) and its logs/ and logs/events/."""
    session = tmp_path / "session_2026-11-30_10-21-25_271804_509"
    (session / "logs" / "events").mkdir(parents=True)
    (session / "logs" / "old").mkdir()
    (tmp_path / "session_latest").symlink_to(session)
    # An idle worker of an earlier job, and the raylet's log, which are not the dead worker's.
    worker(session / "logs", IDLE, 1373, job_in_name="05000000", job="05000000", out="ok\n")
    (session / "logs" / "raylet.out").write_text("[2026-11-30 10:24:05,201 I 762 762] (raylet) worker_pool.cc:1204: "
                                                 f"Force exiting worker whose job has exited {IDLE}\n")
    return tmp_path


def logs_of(temp_dir):
    return temp_dir / "session_latest" / "logs"


def test_an_aborted_worker_gives_its_signal_and_last_lines(temp_dir):
    logs = logs_of(temp_dir)
    worker(logs, ABORTED, 18272, job_in_name="ffffffff", out="starting the matmul\n", err=ABSL + FAULTHANDLER,
           core=ABSL.replace("***", "[2026-11-30 10:40:09,674 E 18272 18272] logging.cc:474: ***", 1))
    (logs / "events" / "event_RAYLET.log").write_text(failure_event(ABORTED, 18272, CONNECTION_DROP) + "\n")

    found = worker_logs.report(str(temp_dir), JOB, TASK, 30)

    assert found["found"] is True and found["worker_id"] == ABORTED and found["pid"] == 18272
    assert found["signal"] == "SIGABRT"
    assert found["signal_line"] == "*** SIGABRT received at time=1796035209 on cpu 1 ***"
    assert found["exit_code"] is None  # "connection error code 2" is no exit code
    assert found["exit_type"] == "SYSTEM_ERROR" and found["exit_detail"].startswith("Worker unexpectedly exits")
    paths = [os.path.basename(item["path"]) for item in found["files"]]
    assert paths == [f"worker-{ABORTED}-ffffffff-18272.err", f"worker-{ABORTED}-ffffffff-18272.out",
                     f"python-core-worker-{ABORTED}_18272.log"]
    assert found["files"][0]["lines"][-1].startswith('  File "/opt/saf/venv/lib/python3.9/site-packages/mlx')
    summary = found["summary"]
    assert summary.startswith(f"worker process 18272 (Ray worker ID {ABORTED}) killed by SIGABRT (*** SIGABRT")
    assert "Ray: exit type SYSTEM_ERROR" in summary
    assert f"last 9 lines of {logs.resolve()}/worker-{ABORTED}-ffffffff-18272.err:\n  :job_id:{JOB}" in summary


def test_a_worker_that_exited_gives_its_exit_code(temp_dir):
    logs = logs_of(temp_dir)
    worker(logs, EXITED, 18560)
    detail = ("The leased worker has unrecoverable failure. Worker is requested to be destroyed when it is returned. "
              "Worker exits with an exit code 4.")
    (logs / "events" / "event_RAYLET.log").write_text(
        failure_event(ABORTED, 18272, CONNECTION_DROP) + "\nnot json\n" + failure_event(EXITED, 18560, detail) + "\n")

    found = worker_logs.report(str(temp_dir), JOB, TASK, 5)

    assert (found["worker_id"], found["signal"], found["exit_code"]) == (EXITED, None, 4)
    assert found["summary"].startswith(f"worker process 18560 (Ray worker ID {EXITED}) exited with code 4; Ray: "
                                       'exit type SYSTEM_ERROR, "The leased worker')


def test_a_killed_worker_says_nothing_was_recorded(temp_dir):
    """SIGKILL (the OOM killer, macOS memory pressure) and os._exit leave no signal line and no exit code."""
    logs = logs_of(temp_dir)
    worker(logs, KILLED, 18271, job_in_name="ffffffff", out="hello\n")
    (logs / "events" / "event_RAYLET.log").write_text(failure_event(KILLED, 18271, CONNECTION_DROP) + "\n")

    found = worker_logs.report(str(temp_dir), JOB, TASK, 30)

    assert found["found"] and found["signal"] is None and found["exit_code"] is None
    assert "exit code and signal not recorded" in found["summary"] and "SIGKILL" in found["summary"]


def test_the_worker_is_found_in_logs_old_and_by_its_markers_not_its_file_name(temp_dir):
    """Ray's log monitor moves a dead worker's files to logs/old/; another job's worker stays unpicked."""
    logs = logs_of(temp_dir)
    worker(logs / "old", ABORTED, 18272, job_in_name="ffffffff", err=ABSL)
    worker(logs, EXITED, 18560, job="0e000000", task=TASK)  # the same task, another job (a later run)

    found = worker_logs.report(str(temp_dir), JOB, TASK, 3)

    assert found["worker_id"] == ABORTED and found["signal"] == "SIGABRT"
    assert all("/logs/old/" in item["path"] for item in found["files"])


def test_the_newest_of_two_matching_workers_is_taken(temp_dir):
    logs = logs_of(temp_dir)
    worker(logs, KILLED, 18271, mtime=1_000_000)
    worker(logs, ABORTED, 18272, err=ABSL, mtime=2_000_000)
    assert worker_logs.report(str(temp_dir), JOB, TASK, 3)["worker_id"] == ABORTED


@pytest.mark.parametrize("line, signal", [
    ("*** Signal 11 received at time=1796035209 on cpu 0 ***", "SIGSEGV"),
    ("Fatal Python error: Segmentation fault", "SIGSEGV"),
    ("Fatal Python error: Bus error", "SIGBUS"),
    ("Fatal Python error: Cannot recover from MemoryErrors while normalizing exceptions.", None),
])
def test_signal_lines(line, signal):
    assert worker_logs.signal_in(["noise\n" + line + "\nmore\n"])[0] == signal


def test_rays_advice_text_is_not_taken_for_a_signal():
    assert worker_logs.signal_in([CONNECTION_DROP]) == (None, None)


def test_no_worker_of_the_job_lists_the_newest_worker_logs(temp_dir):
    found = worker_logs.report(str(temp_dir), JOB, TASK, 3)
    assert found["found"] is False
    assert found["summary"] == (f"no worker log of job {JOB} with task {TASK} under "
                                f"{(temp_dir / 'session_latest').resolve()}/logs "
                                f"(newest worker logs: worker-{IDLE}-05000000-1373.err)")


def test_no_session_says_so(tmp_path):
    found = worker_logs.report(str(tmp_path), JOB, TASK, 3)
    assert found["found"] is False and found["summary"] == f"no Ray session directory under {tmp_path}"


def test_without_session_latest_the_newest_session_is_read(tmp_path):
    for name, mtime in (("session_2026-11-29_09-00-00_000000_1", 1_000_000), ("session_2026-11-30_10-00-00_000000_2", 2_000_000)):
        (tmp_path / name / "logs").mkdir(parents=True)
        os.utime(tmp_path / name, (mtime, mtime))
    worker(tmp_path / "session_2026-11-30_10-00-00_000000_2" / "logs", ABORTED, 18272, err=ABSL)
    assert worker_logs.report(str(tmp_path), JOB, TASK, 3)["signal"] == "SIGABRT"


def test_the_script_prints_one_json_object_under_python_3_9_rules(temp_dir):
    """As cluster_verify runs it on a node: argv in, one JSON object out, exit 0 also when nothing is found."""
    logs = logs_of(temp_dir)
    worker(logs, ABORTED, 18272, err=ABSL)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(temp_dir), JOB, TASK, "2"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["signal"] == "SIGABRT" and [len(item["lines"]) for item in printed["files"]] == [2, 2, 1]
    nothing = subprocess.run([sys.executable, str(SCRIPT), str(temp_dir), "0f000000", TASK, "2"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert nothing.returncode == 0 and json.loads(nothing.stdout)["found"] is False
    ast.parse(SCRIPT.read_text(), str(SCRIPT), feature_version=(3, 9))


def test_a_reused_worker_is_found_by_the_task_after_its_job_line(temp_dir):
    """Recorded: a worker that ran two probe tasks, then the one that aborted, has one ':job_id:' line
    and a ':task_name:' line per task; the job's marker and the task's need not be adjacent."""
    logs = logs_of(temp_dir)
    text = f":job_id:{JOB}\n:task_name:mlx_matmul_task\n:task_name:mlx_matmul_task\n:task_name:crash\n"
    for suffix, extra in (("out", ""), ("err", ABSL)):
        (logs / f"worker-{ABORTED}-ffffffff-18272.{suffix}").write_text(text + extra)
    assert worker_logs.report(str(temp_dir), JOB, "crash", 3)["worker_id"] == ABORTED
    assert worker_logs.report(str(temp_dir), JOB, TASK, 3)["worker_id"] == ABORTED
    assert worker_logs.report(str(temp_dir), "0e000000", "crash", 3)["found"] is False


def test_ran_task_needs_the_task_under_the_jobs_line():
    text = ":job_id:05000000\n:task_name:mlx_matmul_task\n:job_id:0d000000\n:task_name:other\n"
    assert worker_logs.ran_task(text, "05000000", TASK) is True
    assert worker_logs.ran_task(text, "0d000000", TASK) is False
