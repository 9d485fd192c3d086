#!/usr/bin/env python3
"""make bench: SAF against Ray's own cluster launcher and a hand-run floor, on the lab, as ratios.

Run after ``make demo`` (the lab is up, every node provisioned). Each figure is the median of
``--rounds`` rounds (default 5) taken in this one run: the machine is shared and noisy, so absolute
times move between runs while ratios taken side by side hold. Prints a table and writes
``reports/bench.json``. The figures (docs/performance.md has the targets and what was done about them):

1. Cold start, Ray stopped on every node, environments installed: seconds from the command to every
   node Alive in the GCS (the later of the command's exit and the first poll that sees them all)
   for (a) ``ansible-playbook site.yml``, (b) ``ray up`` with the local node provider driven by a
   cluster YAML written here for the same hosts and the same ``ray start`` arguments as SAF's, (c)
   ``ray start`` by hand over SSH, head then worker. ``cold_start_vs_rayup`` = a/b,
   ``cold_start_vs_floor`` = a/c.
2. Re-run on a healthy cluster: ``site.yml`` again vs ``ray up`` again, wall seconds, and how many
   Ray nodes were restarted (node IDs before vs after). ``rerun_vs_rayup``, ``rerun_ray_restarts``.
3. Verify cost: ``verify.yml`` wall seconds vs one pinned no-op task submitted from the head
   (connect + schedule + return), and the module's own overhead (an ad-hoc run of saf_mlx_probe
   minus that bare cost minus its timed products).
4. GFLOPS fidelity at N = 512, 1024, 2048 (N x N float32, the module's iteration count): the module's
   figure for the first worker vs MLX's matmul timed in-process on that worker the same way, and vs
   numpy's matmul there. ``gflops_fidelity`` = module / in-process at saf_verify_matrix_size.
5. Scale: ``verify.yml`` (its verify play) with one, two and three worker nodes (GAMMA and DELTA are
   added to the lab for it and removed after). ``verify_3_vs_1_workers``; and the same at N = 64
   (``verify_3_vs_1_workers_n64``), where the matmul costs next to nothing: the lab's hosts share
   this machine's cores, so at the default N three concurrent products compete for them.
6. Profile: one cold ``site.yml`` and one re-run with ansible.posix's ``profile_tasks`` callback
   (from the ``ansible`` package on PyPI, collections only, in .venv-bench); the slowest 15 tasks
   of each go into the report, in seconds.

Every command has a timeout. A start or round that fails (site.yml's, ``ray up``'s or the hand
floor's: a node never Alive, a closed SSH connection) is counted with its message and the bench
goes on: the medians are of the rounds that passed, and the summary puts each way's failed starts
beside its times (``failures`` in each section of the report). A step that cannot run at all is
reported with its error and the next step runs; the exit status is 1 when any step did not finish.
The lab is left as ``make demo`` leaves it: the cluster is started again with site.yml at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / ".lab"
SAFLAB = REPO / "lab" / "saflab.py"
VENV_BIN = Path(sys.executable).parent
REPORT = REPO / "reports" / "bench.json"
BENCH_INVENTORIES = REPO / "inventory" / "bench"
NODE_PYTHON = "/opt/saf/venv/bin/python"
NODE_RAY = "/opt/saf/venv/bin/ray"
START_RECORD = "/opt/saf/ray/start.json"
SIZES = (512, 1024, 2048)
COMMAND_TIMEOUT = 900  # seconds; a cold site.yml on fresh hosts installs the venvs
ALIVE_TIMEOUT = 180    # seconds for every node to be Alive after a start


class BenchError(Exception):
    """A step failed; the message names the command and what it printed."""


@dataclass(frozen=True)
class Node:
    """A lab host as the inventory names it."""

    name: str
    address: str


HEAD = Node("ALPHA", "198.18.0.11")
WORKERS = (Node("BETA", "198.18.0.12"), Node("GAMMA", "198.18.0.13"), Node("DELTA", "198.18.0.14"))


# --- Running things --------------------------------------------------------------------------------

def run(argv: list, timeout: float = COMMAND_TIMEOUT, env: dict | None = None, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command; raise BenchError naming it when it fails or times out."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                              env={**os.environ, **(env or {})}, cwd=REPO, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{shlex.join(map(str, argv))}: no exit within {timeout} s") from exc
    if check and proc.returncode != 0:
        raise BenchError(f"{shlex.join(map(str, argv))}: exit {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def ssh_argv(node: Node, command: str) -> list:
    """ssh to a lab host with the lab's key and known_hosts (strict host key checking)."""
    return ["ssh", "-F", "/dev/null", "-i", str(LAB / "id_ed25519"), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={LAB / 'known_hosts'}", "-o", "LogLevel=ERROR",
            f"root@{node.address}", command]


def ssh(node: Node, command: str, timeout: float = 300, input: str | None = None) -> str:
    return run(ssh_argv(node, command), timeout=timeout, input=input).stdout


def node_python(node: Node, script: str, *args, timeout: float = 300) -> dict:
    """Run a Python script with the node's venv (sent on stdin); its last stdout line is JSON."""
    out = ssh(node, shlex.join([NODE_PYTHON, "-", *map(str, args)]), timeout=timeout, input=script)
    return json.loads(out.strip().splitlines()[-1])


def playbook(*args, inventory: Path | None = None, timeout: float = COMMAND_TIMEOUT) -> float:
    """Run ansible-playbook; return its wall seconds."""
    argv = [str(VENV_BIN / "ansible-playbook"), *(["-i", str(inventory)] if inventory else []), *args]
    start = time.monotonic()
    run(argv, timeout=timeout, env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"})
    return time.monotonic() - start


# --- The GCS, seen from the head node ------------------------------------------------------------

# Polls the GCS from the head node without a driver (no raylet needed): prints, once every expected
# node is Alive, the wall-clock time it saw that (the lab shares the machine's clock) and the node IDs.
POLL_ALIVE = r"""
import json, socket, sys, time
from ray._raylet import GcsClient
from ray.core.generated import gcs_pb2
address, want, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host, port = address.rsplit(":", 1)
deadline = time.monotonic() + timeout
client = None
while time.monotonic() < deadline:
    try:
        if client is None:
            socket.create_connection((host, int(port)), 1).close()
            client = GcsClient(address=address)
        nodes = client.get_all_node_info(timeout=2, state_filter=gcs_pb2.GcsNodeInfo.GcsNodeState.ALIVE)
        if len(nodes) >= want:
            print(json.dumps({"alive_at": time.time(), "node_ids": sorted(k.hex() for k in nodes)}))
            sys.exit(0)
    except Exception:
        client = None
    time.sleep(0.1)
print(json.dumps({"alive_at": None, "node_ids": []}))
sys.exit(1)
"""


def start_alive_poll(count: int, timeout: float = ALIVE_TIMEOUT) -> subprocess.Popen:
    """Start polling the head's GCS for ``count`` Alive nodes (in the background)."""
    argv = ssh_argv(HEAD, shlex.join([NODE_PYTHON, "-", f"{HEAD.address}:6380", str(count), str(timeout)]))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(POLL_ALIVE)
    proc.stdin.close()
    proc.stdin = None  # sent whole; communicate() must not touch it again
    return proc


def finish_alive_poll(proc: subprocess.Popen, timeout: float = ALIVE_TIMEOUT + 30) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise BenchError("the GCS poll on the head did not end") from exc
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"alive_at": None}
    if proc.returncode != 0 or result["alive_at"] is None:
        raise BenchError(f"not every node was Alive in the GCS within {ALIVE_TIMEOUT} s: {err[-2000:]}")
    return result


def alive_node_ids(count: int) -> list:
    """The node IDs of the Alive nodes, once there are ``count``."""
    return finish_alive_poll(start_alive_poll(count, timeout=60))["node_ids"]


def time_to_alive(command, count: int, split: dict | None = None) -> float:
    """Seconds from starting ``command()`` to every node Alive: the later of its exit and the poll.

    ``split``, when given, gets the two parts appended: ``alive`` (to the first poll that saw every
    node Alive, whatever the command was doing) and ``exit`` (to the command's exit)."""
    poll = start_alive_poll(count)
    start = time.time()
    command()
    ended = time.time()
    alive_at = finish_alive_poll(poll)["alive_at"]
    if split is not None:
        split.setdefault("alive", []).append(alive_at - start)
        split.setdefault("exit", []).append(ended - start)
    return max(ended, alive_at) - start


# --- Ways to start Ray ---------------------------------------------------------------------------

def start_record(node: Node) -> dict:
    """The record site.yml wrote on the node: the exact ``ray start`` argv and environment SAF uses."""
    return json.loads(ssh(node, f"cat {START_RECORD}"))


def start_command(record: dict, shell_suffix: str = "") -> str:
    """SAF's ``ray start`` command line of a node, as one shell command with its environment;
    ``shell_suffix`` is appended unquoted (a ``~`` in it is the shell's to expand)."""
    env = [f"{k}={v}" for k, v in sorted(record["environment"].items())]
    return " ".join(filter(None, [shlex.join(["env", *env, *record["argv"]]), shell_suffix]))


def stop_ray(nodes, tries: int = 2) -> None:
    """Stop Ray on every node and wait until no raylet is left. An SSH connection the node closed
    (seen after a failed start) is tried again, ``tries`` times in all; then BenchError."""
    command = (f"{NODE_RAY} stop --force >/dev/null 2>&1; "
               "for i in $(seq 50); do pgrep -x raylet >/dev/null || exit 0; sleep 0.2; done; exit 1")
    for node in nodes:
        for left in reversed(range(tries)):
            try:
                ssh(node, command, timeout=60)
                break
            except BenchError:
                if not left:
                    raise
                time.sleep(1)


def start_by_hand(nodes, records) -> None:
    """The floor: ``ray start`` over SSH, head then each worker, with SAF's own arguments."""
    for node in nodes:
        ssh(node, start_command(records[node.name]), timeout=180)


def rayup_config(nodes, records, path: Path) -> Path:
    """A cluster YAML for ``ray up`` with the local node provider, for the same hosts and arguments."""
    head, workers = nodes[0], nodes[1:]
    config = {
        "cluster_name": "saf-bench",
        "provider": {"type": "local", "head_ip": head.address, "worker_ips": [w.address for w in workers]},
        "auth": {"ssh_user": "root", "ssh_private_key": str(LAB / "id_ed25519")},
        "min_workers": len(workers),
        "max_workers": len(workers),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 60,
        "file_mounts": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [
            f"{NODE_RAY} stop",
            start_command(records[head.name], "--autoscaling-config=~/ray_bootstrap_config.yaml"),
        ],
        # One command for every worker: Ray finds the worker's own address (the lab host has one).
        "worker_start_ray_commands": [f"{NODE_RAY} stop", start_command(without_node_ip(records[workers[0].name]))],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def without_node_ip(record: dict) -> dict:
    return {**record, "argv": [a for a in record["argv"] if not a.startswith("--node-ip-address=")]}


def ray_up(config: Path, ray_cli: Path) -> float:
    start = time.monotonic()
    run([str(ray_cli), "up", "-y", "--no-config-cache", str(config)], timeout=600,
        env={"RAY_USAGE_STATS_ENABLED": "0"})
    return time.monotonic() - start


# --- The figures ---------------------------------------------------------------------------------

def median(values) -> float:
    """The median, or nan when every round failed (a ratio of it is then nan too)."""
    return statistics.median(values) if values else float("nan")


def attempt(failures: list, what: str, action):
    """``action()``'s result; when it raises BenchError, the failure is appended to ``failures``
    (``{"what": what, "error": first 500 characters}``), shown, and None returned: one failed start
    or round is a finding to count, not a reason to stop the bench."""
    try:
        return action()
    except BenchError as exc:
        failures.append({"what": what, "error": str(exc)[:500]})
        progress(f"{what}: FAILED: {str(exc)[:200]}")
        return None


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def restarted(before: list, after: list) -> int:
    """How many of the nodes Alive before are no longer Alive with the same node ID."""
    return len(set(before) - set(after))


def cold_start(rounds: int, ray_cli: Path, workdir: Path) -> dict:
    nodes = (HEAD, WORKERS[0])
    records = {n.name: start_record(n) for n in nodes}
    config = rayup_config(nodes, records, workdir / "rayup.yaml")
    ways = {
        "site": lambda: playbook("site.yml"),
        "rayup": lambda: ray_up(config, ray_cli),
        "floor": lambda: start_by_hand(nodes, records),
    }
    seconds = {way: [] for way in ways}
    parts = {way: {} for way in ways}
    failures = {way: [] for way in ways}
    for round_ in range(rounds):
        for way, command in ways.items():
            # Every way, SAF's included, is counted the same: a start that never gets every node
            # Alive (or a stop that fails before it) is a failed start, left out of the median.
            what = f"cold start round {round_ + 1}/{rounds}: {way}"
            took = attempt(failures[way], what, lambda: (stop_ray(nodes), time_to_alive(command, len(nodes), parts[way]))[1])
            if took is not None:
                seconds[way].append(took)
                progress(f"{what} {took:.1f} s")
    medians = {way: median(values) for way, values in seconds.items()}
    # The two parts, for the record: every node Alive in the GCS, and the command's exit.
    split = {way: {part: median(values) for part, values in parts[way].items()} for way in ways if parts[way]}
    return {"seconds": seconds, "median_seconds": medians, "median_split_seconds": split, "failures": failures,
            "rounds": rounds, **{f"{way}_failed_starts": len(failures[way]) for way in ways},
            "cold_start_vs_rayup": ratio(medians["site"], medians["rayup"]),
            "cold_start_vs_floor": ratio(medians["site"], medians["floor"])}


def start_healthy(command, nodes, failures: list, what: str, tries: int = 3) -> bool:
    """Start the cluster a re-run is measured on; a start that never gets every node Alive (Ray's
    own ways have no retry) is counted in ``failures``, stopped and tried again, up to ``tries``
    times. Whether a start got every node Alive."""
    for try_ in range(tries):
        if attempt(failures, f"{what} (try {try_ + 1}/{tries})",
                   lambda: (stop_ray(nodes), time_to_alive(command, len(nodes)))[1]) is not None:
            return True
    return False


def rerun(rounds: int, ray_cli: Path, workdir: Path) -> dict:
    nodes = (HEAD, WORKERS[0])
    results = {}
    for way in ("site", "rayup"):
        stop_ray(nodes)
        records = {n.name: start_record(n) for n in nodes}
        config = rayup_config(nodes, records, workdir / "rayup.yaml")
        command = (lambda: playbook("site.yml")) if way == "site" else (lambda: ray_up(config, ray_cli))
        setup_failures, round_failures = [], []
        walls, restarts = [], []
        healthy = False
        for round_ in range(rounds):
            # The healthy cluster to re-run on: at first, and again after a round that broke it.
            healthy = healthy or start_healthy(command, nodes, setup_failures, f"re-run setup: {way}")
            if not healthy:
                round_failures.append({"what": f"re-run round {round_ + 1}/{rounds}: {way}",
                                       "error": "no healthy cluster to re-run on (see the setup failures)"})
                continue

            def one_round():
                before = alive_node_ids(len(nodes))
                start = time.monotonic()
                command()
                wall = time.monotonic() - start
                return wall, restarted(before, alive_node_ids(len(nodes)))

            measured = attempt(round_failures, f"re-run round {round_ + 1}/{rounds}: {way}", one_round)
            if measured is None:
                healthy = False  # a node may not have come back: start a healthy cluster again
                continue
            walls.append(measured[0])
            restarts.append(measured[1])
            progress(f"re-run round {round_ + 1}/{rounds}: {way} {walls[-1]:.1f} s, {restarts[-1]} node(s) restarted")
        results[way] = {"seconds": walls, "median_seconds": median(walls), "restarts": restarts,
                        "setup_failed_starts": len(setup_failures), "failed_rounds": len(round_failures),
                        "failures": setup_failures + round_failures}
    attempt([], "re-run: the lab's cluster again", lambda: (stop_ray(nodes), playbook("site.yml")))
    return {**results, "rounds": rounds,
            "rerun_vs_rayup": ratio(results["site"]["median_seconds"], results["rayup"]["median_seconds"]),
            "rerun_ray_restarts": max(results["site"]["restarts"], default=float("nan"))}


NOOP_TASK = r"""
import json, sys, time
start = time.perf_counter()
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
imported = time.perf_counter()
ray.init(address=sys.argv[1], log_to_driver=False)
connected = time.perf_counter()
target = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == sys.argv[2])
@ray.remote(num_cpus=1, max_retries=0)
def noop():
    return 0
ray.get(noop.options(scheduling_strategy=NodeAffinitySchedulingStrategy(target, soft=False)).remote(), timeout=120)
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "connect_s": connected - imported, "task_s": done - connected,
                  "total_s": done - start}))
"""


def verify_cost(rounds: int) -> dict:
    worker = WORKERS[0]
    walls, bare, adhoc, overhead = [], [], [], []
    for round_ in range(rounds):
        walls.append(playbook("verify.yml"))
        noop = node_python(HEAD, NOOP_TASK, f"{HEAD.address}:6380", worker.address)
        bare.append(noop["total_s"])
        wall, result = probe_adhoc(worker, 1024)
        adhoc.append(wall)
        overhead.append(wall - noop["total_s"] - sum(result["seconds"]))
        progress(f"verify round {round_ + 1}/{rounds}: verify.yml {walls[-1]:.1f} s, bare task {bare[-1]:.2f} s, "
                 f"module ad hoc {adhoc[-1]:.1f} s")
    return {"verify_seconds": walls, "bare_task_seconds": bare, "module_adhoc_seconds": adhoc,
            "median_verify_seconds": median(walls), "median_bare_task_seconds": median(bare),
            "median_module_overhead_seconds": median(overhead),
            "verify_vs_bare_task": ratio(median(walls), median(bare))}


def probe_adhoc(worker: Node, size: int, iterations: int = 5) -> tuple:
    """Run saf_mlx_probe ad hoc on the head for one worker; (wall seconds, module result)."""
    args = {"gcs_address": f"{HEAD.address}:6380", "driver_node_ip": HEAD.address, "host": worker.name,
            "expected_hostname": f"{worker.name}.local", "node_address": worker.address,
            "matrix_size": size, "iterations": iterations, "timeout": 300, "require_gpu": False}
    argv = [str(VENV_BIN / "ansible"), HEAD.name, "-m", "saf_mlx_probe", "-a", json.dumps(args),
            "-e", f"ansible_python_interpreter={NODE_PYTHON}", "--one-line"]
    start = time.monotonic()
    out = run(argv, timeout=600, env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}).stdout
    wall = time.monotonic() - start
    # One line: "ALPHA | SUCCESS => {...}"
    return wall, json.loads(out.split("=>", 1)[1])


# In-process reference on the worker: the module's procedure (float32 normal inputs, one untimed
# warm-up, perf_counter around the product and mx.eval), and numpy's matmul the same way.
IN_PROCESS = r"""
import json, statistics, sys, time
sys.path.append(sys.argv[3])  # numpy, installed for the bench beside the venv (not a Ray/MLX dependency)
import mlx.core as mx
import numpy as np
n, iterations = int(sys.argv[1]), int(sys.argv[2])
ka, kb = mx.random.split(mx.random.key(0))
a = mx.random.normal((n, n), dtype=mx.float32, key=ka)
b = mx.random.normal((n, n), dtype=mx.float32, key=kb)
mx.eval(a, b)
mx.eval(a @ b)
mlx_s = []
for _ in range(iterations):
    t = time.perf_counter(); c = a @ b; mx.eval(c); mlx_s.append(time.perf_counter() - t)
na, nb = np.array(a), np.array(b)
na @ nb
np_s = []
for _ in range(iterations):
    t = time.perf_counter(); na @ nb; np_s.append(time.perf_counter() - t)
flop = 2 * n ** 3
print(json.dumps({"mlx_gflops": flop / statistics.median(mlx_s) / 1e9, "numpy_gflops": flop / statistics.median(np_s) / 1e9}))
"""


NUMPY_DIR = "/opt/saf/bench/numpy"
NUMPY_VERSION = "2.0.2"  # the last numpy for Python 3.9


def install_numpy(node: Node) -> None:
    """numpy for the reference figure, in a directory of its own on the node (the venv stays as SAF
    built it). The lab has no internet: the wheel goes through the controller, as SAF's do."""
    if ssh(node, f"test -d {NUMPY_DIR}/numpy && echo yes || true").strip() == "yes":
        return
    python = json.loads(ssh(node, f"cat {START_RECORD}"))["runtime"]["python"]
    cache = Path.home() / ".cache" / "saf" / "bench-wheels"
    run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(cache), "--only-binary=:all:",
         "--python-version", python, "--platform", "manylinux2014_x86_64", f"numpy=={NUMPY_VERSION}"], timeout=600)
    wheel = next(cache.glob(f"numpy-{NUMPY_VERSION}-cp{''.join(python.split('.')[:2])}-*.whl"))
    copy = subprocess.run(ssh_argv(node, f"mkdir -p /opt/saf/bench && cat > /opt/saf/bench/{wheel.name}"),
                          input=wheel.read_bytes(), capture_output=True, timeout=300, check=False)
    if copy.returncode != 0:
        raise BenchError(f"{node.name}: cannot copy {wheel.name}: {copy.stderr.decode(errors='replace')}")
    ssh(node, f"{NODE_PYTHON} -m pip install --quiet --no-index --target {NUMPY_DIR} /opt/saf/bench/{wheel.name}")


def gflops_fidelity(rounds: int, default_size: int) -> dict:
    worker = WORKERS[0]
    install_numpy(worker)
    sizes = {}
    for size in SIZES:
        module, mlx, numpy = [], [], []
        for _ in range(rounds):
            module.append(probe_adhoc(worker, size)[1]["gflops"])
            reference = node_python(worker, IN_PROCESS, size, 5, NUMPY_DIR)
            mlx.append(reference["mlx_gflops"])
            numpy.append(reference["numpy_gflops"])
        sizes[str(size)] = {"module_gflops": median(module), "in_process_mlx_gflops": median(mlx),
                            "numpy_gflops": median(numpy),
                            "module_vs_in_process": ratio(median(module), median(mlx)),
                            "mlx_vs_numpy": ratio(median(mlx), median(numpy))}
        progress(f"GFLOPS N={size}: module {median(module):.1f}, in-process MLX {median(mlx):.1f}, numpy {median(numpy):.1f}")
    return {"sizes": sizes, "gflops_fidelity": sizes[str(default_size)]["module_vs_in_process"]}


def scale(rounds: int) -> dict:
    extra = WORKERS[1:]
    run([sys.executable, str(SAFLAB), "add", *[n.name for n in extra]], timeout=300)
    try:
        inventories = {k: BENCH_INVENTORIES / f"workers-{k}.yml" for k in (1, 2, 3)}
        failures = []
        # Four nodes starting on two cores: the start SAF's retry may not save is counted, and tried again.
        for try_ in range(3):
            if attempt(failures, f"scale: site.yml with 3 workers (try {try_ + 1}/3)",
                       lambda: playbook("site.yml", inventory=inventories[3])) is not None:
                break
        else:
            raise BenchError(f"scale: site.yml never started the 4 nodes: {failures[-1]['error']}")
        seconds, small = {}, {}
        for k in (3, 2, 1):
            if k < 3:
                stop_ray([WORKERS[k]])

            def rounds_of(*extra):
                runs = (attempt(failures, f"scale: verify.yml with {k} worker(s) {' '.join(extra)}".rstrip(),
                                lambda: playbook("verify.yml", "--tags", "verify", *extra, inventory=inventories[k]))
                        for _ in range(rounds))
                return [wall for wall in runs if wall is not None]

            seconds[k] = rounds_of()
            # The lab's hosts share this machine's cores: a 64 x 64 product leaves only the orchestration.
            small[k] = rounds_of("-e", f"saf_verify_matrix_size={SMALL_N}", "-e", "saf_verify_min_seconds=0")
            progress(f"scale: {k} worker(s), verify {median(seconds[k]):.1f} s, with N={SMALL_N} {median(small[k]):.1f} s")
    finally:
        stop_ray([n for n in extra if lab_has(n)])
        run([sys.executable, str(SAFLAB), "remove", *[n.name for n in extra]], timeout=300, check=False)
        playbook("site.yml")  # the lab's own firewall and cluster again
    medians = {str(k): median(v) for k, v in seconds.items()}
    small_medians = {str(k): median(v) for k, v in small.items()}
    return {"seconds": {str(k): v for k, v in seconds.items()}, "median_seconds": medians, "failures": failures,
            "small_n_seconds": {str(k): v for k, v in small.items()}, "small_n_median_seconds": small_medians,
            "verify_2_vs_1_workers": ratio(medians["2"], medians["1"]),
            "verify_3_vs_1_workers": ratio(medians["3"], medians["1"]),
            f"verify_3_vs_1_workers_n{SMALL_N}": ratio(small_medians["3"], small_medians["1"])}


# ansible.posix's profile_tasks callback, from the `ansible` package on PyPI (Galaxy is out of reach);
# installed without its dependencies into .venv-bench, only for its collections directory.
ANSIBLE_PACKAGE = "ansible==12.3.0"  # the community package of ansible-core 2.19
PROFILE_LINE = re.compile(r"^(?P<task>.+?) -+ (?P<seconds>[0-9.]+)s$")


def profile_tasks_env(venv: Path) -> dict:
    """The environment that turns on ansible.posix.profile_tasks for every task (installing it once)."""
    stamp = venv / ".ansible-collections"
    if not stamp.exists():
        progress(f"installing {ANSIBLE_PACKAGE} (collections only) into {venv} for profile_tasks")
        run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", ANSIBLE_PACKAGE], timeout=900)
        stamp.touch()
    (site,) = venv.glob("lib/python3*/site-packages")
    return {"ANSIBLE_COLLECTIONS_PATH": str(site), "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0"}


def parse_profile(output: str) -> list:
    """``[(task, seconds)]`` from profile_tasks' recap, slowest first."""
    recap = output.split("TASKS RECAP", 1)[-1]
    tasks = []
    for line in recap.splitlines():
        match = PROFILE_LINE.match(line.strip())
        if match:
            tasks.append((match.group("task"), float(match.group("seconds"))))
    return sorted(tasks, key=lambda item: -item[1])


def profile(venv: Path) -> dict:
    """One cold site.yml (Ray stopped) and one re-run, each task timed by profile_tasks."""
    env = profile_tasks_env(venv)
    nodes = (HEAD, WORKERS[0])
    result = {}
    for name in ("cold", "rerun"):
        if name == "cold":
            stop_ray(nodes)
        start = time.monotonic()
        out = run([str(VENV_BIN / "ansible-playbook"), "site.yml"], env=env).stdout
        tasks = parse_profile(out)
        result[name] = {"seconds": time.monotonic() - start, "task_seconds": sum(s for _t, s in tasks),
                        "tasks": len(tasks), "slowest": tasks[:15]}
        progress(f"profile {name}: {result[name]['seconds']:.1f} s, {len(tasks)} tasks; slowest: "
                 + ", ".join(f"{t} {s:.1f}" for t, s in tasks[:3]))
    return result


SMALL_N = 64  # the scale step's second matrix size: compute next to nothing, orchestration left


def lab_has(node: Node) -> bool:
    return run([sys.executable, str(SAFLAB), "exec", node.name, "--", "true"], timeout=30, check=False).returncode == 0


# --- Output --------------------------------------------------------------------------------------

def progress(line: str) -> None:
    print(f"  {line}", flush=True)


TARGETS = [  # (key, target, holds)
    ("cold_start_vs_rayup", "<= 0.8", lambda v: v <= 0.8),
    ("cold_start_vs_floor", "<= 1.5", lambda v: v <= 1.5),
    ("rerun_vs_rayup", "<= 0.5", lambda v: v <= 0.5),
    ("rerun_ray_restarts", "== 0", lambda v: v == 0),
    ("gflops_fidelity", "0.9 .. 1.1", lambda v: 0.9 <= v <= 1.1),
    ("verify_3_vs_1_workers", "<= 1.3", lambda v: v <= 1.3),
]


def table(figures: dict) -> str:
    rows = [("figure", "value", "target", "met")]
    for key, target, holds in TARGETS:
        if key in figures:
            rows.append((key, f"{figures[key]:g}", target, "yes" if holds(figures[key]) else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def medians_lines(raw: dict) -> list:
    """The raw medians behind the ratios, in seconds, one line per section that ran."""
    lines = []
    for key, section in raw.items():
        if "error" in section:
            lines.append(f"{key}: did not finish: {section['error'][:300]}")
    if "cold" in raw and "median_seconds" in raw["cold"]:
        cold = raw["cold"]
        split = cold.get("median_split_seconds", {})
        failed = {way: len(f) for way, f in cold.get("failures", {}).items()}
        lines.append("cold start (s, to Alive and exited; failed starts of rounds): " + ", ".join(
            f"{way} {value:.1f} (Alive {split.get(way, {}).get('alive', float('nan')):.1f}, "
            f"exit {split.get(way, {}).get('exit', float('nan')):.1f}; "
            f"{failed.get(way, 0)}/{cold.get('rounds', '?')} failed)"
            for way, value in cold["median_seconds"].items()))
    if "rerun" in raw and "site" in raw["rerun"]:
        rerun = raw["rerun"]
        lines.append("re-run (s; failed rounds, failed setup starts): " + ", ".join(
            f"{way} {rerun[way]['median_seconds']:.1f} ({rerun[way].get('failed_rounds', 0)}/{rerun.get('rounds', '?')} "
            f"rounds, {rerun[way].get('setup_failed_starts', 0)} setup starts failed)" for way in ("site", "rayup")))
    if "verify" in raw and "median_verify_seconds" in raw["verify"]:
        verify = raw["verify"]
        lines.append(f"verify (s): verify.yml {verify['median_verify_seconds']:.1f}, bare pinned task "
                     f"{verify['median_bare_task_seconds']:.2f}, module overhead {verify['median_module_overhead_seconds']:.2f}")
    if "scale" in raw and "median_seconds" in raw["scale"]:
        lines.append("verify.yml by workers (s): " + ", ".join(
            f"{k}: {v:.1f}" for k, v in sorted(raw["scale"]["median_seconds"].items()))
            + f"; {len(raw['scale'].get('failures', []))} failed run(s)")
        if "small_n_median_seconds" in raw["scale"]:
            lines.append(f"verify.yml by workers at N={SMALL_N} (s): " + ", ".join(
                f"{k}: {v:.1f}" for k, v in sorted(raw["scale"]["small_n_median_seconds"].items())))
    return lines


def ensure_ray_cli() -> Path:
    """The ``ray`` CLI for ``ray up``: a venv of its own (.venv-bench) with the cluster's Ray release."""
    version = json.loads(ssh(HEAD, f"cat {START_RECORD}"))["runtime"]["ray"]
    venv = REPO / ".venv-bench"
    ray_cli = venv / "bin" / "ray"
    stamp = venv / f".ray-{version}"
    if not stamp.exists():
        progress(f"installing ray=={version} into {venv} for `ray up`")
        run([sys.executable, "-m", "venv", str(venv)], timeout=120)
        run([str(venv / "bin" / "pip"), "install", "--quiet", f"ray=={version}"], timeout=900)
        stamp.touch()
    return ray_cli


def check_prerequisites() -> None:
    missing = [tool for tool in ("rsync", "ssh") if run(["sh", "-c", f"command -v {tool}"], check=False).returncode]
    if missing:
        raise BenchError(f"`ray up` needs {', '.join(missing)} on the controller and the lab hosts: apt-get install {' '.join(missing)}")
    if run([sys.executable, str(SAFLAB), "status"], check=False, timeout=60).returncode:
        raise BenchError("the lab is not up: run `make demo` first")


def write_report(path: Path, rounds: int, figures: dict, raw: dict) -> None:
    report = {"rounds": rounds, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures, "raw": raw}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure, the median is kept (default 5)")
    parser.add_argument("--only", default="cold,rerun,verify,gflops,scale,profile",
                        help="comma-separated sections to run (default: all)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    try:
        check_prerequisites()
        ray_cli = ensure_ray_cli()
        default_size = yaml.safe_load((REPO / "roles" / "saf" / "defaults" / "main.yml").read_text())["saf_verify_matrix_size"]
        figures, raw = {}, {}
        with tempfile.TemporaryDirectory(prefix="saf-bench-") as tmp:
            steps = [("cold", "1. cold start", lambda: cold_start(args.rounds, ray_cli, Path(tmp))),
                     ("rerun", "2. re-run on a healthy cluster", lambda: rerun(args.rounds, ray_cli, Path(tmp))),
                     ("verify", "3. verify cost", lambda: verify_cost(args.rounds)),
                     ("gflops", "4. GFLOPS fidelity", lambda: gflops_fidelity(args.rounds, default_size)),
                     ("scale", "5. scale", lambda: scale(args.rounds)),
                     ("profile", "6. per-task profile of site.yml", lambda: profile(ray_cli.parent.parent))]
            for key, title, step in steps:
                if key not in sections:
                    continue
                print(title, flush=True)
                raw[key] = run_step(key, step)
                figures.update({k: v for k, v in raw[key].items() if isinstance(v, (int, float))})
                write_report(args.report, args.rounds, figures, raw)  # a partial run keeps what it measured
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(figures))
    print()
    print("\n".join(medians_lines(raw)))
    print(f"\nwritten: {args.report}")
    return 1 if any("error" in section for section in raw.values()) else 0


def run_step(key: str, step) -> dict:
    """One step's figures; a step that cannot finish gives ``{"error": ...}`` and the bench goes on."""
    try:
        return step()
    except BenchError as exc:
        progress(f"{key}: did not finish: {str(exc)[:300]}")
        return {"error": str(exc)[:2000]}


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
    sys.exit(130)
