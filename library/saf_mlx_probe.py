#!/usr/bin/python
# -*- coding: utf-8 -*-
# SAF: Ansible provisioning of a Ray 2.49.2 + MLX 0.29.1 cluster.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: saf_mlx_probe
short_description: Run an MLX matmul as a Ray task pinned to each worker node and check where and how it ran
description:
  - Connects to the Ray cluster as a driver (run it on the Ray head node, under the runtime venv's Python,
    C(saf_runtime_venv/bin/python) in the roles, with C(saf_ray_environment) as its environment),
    selects each target's Alive node by its Ray node IP (O(node_address)) or by its hostname (O(expected_hostname)),
    and runs an N x N float32 MLX matrix product there as a Ray task pinned with
    C(NodeAffinitySchedulingStrategy) with C(soft=False) and C(num_cpus=1).
  - One target (O(expected_hostname)), or several (O(workers)) with one driver connection; every task is
    submitted before any result is awaited, and one wait of at most O(timeout) covers them all, so three
    workers take about the time of one.
  - The task times O(iterations) products (each with C(mx.eval) inside the timed region, after one untimed
    warm-up), reports GFLOPS from the median time, and checks O(sample) entries of the product against a
    float64 reference with the rigorous float32 dot-product error bound gamma_n = n*u/(1-n*u), u = 2**-24
    (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1, eq. (3.5)).
  - With O(min_seconds) above 0 the size grows first, so the figure measures the device and not the dispatch
    and synchronisation around it (an M3 Ultra finishes a 1024 x 1024 float32 product in a fraction of a
    millisecond). From O(matrix_size) the task tries N, 2N, 4N, ... (powers of two times O(matrix_size)), each
    with fresh matrices, one untimed warm-up and one timed product, and keeps the first size whose product
    lasts at least O(min_seconds) seconds, or the last size whose A, B and C (3 * 4 * N**2 bytes, float32) fit
    in O(max_matrix_bytes). RV(matrix_size) is the size used, RV(sizing) says how it was reached.
  - With O(gpu_resource), each task also asks for 1 of that Ray custom resource (the node's GPU, which
    C(ray start --resources) gives each Mac; Ray 2.49 counts no Apple GPU), so two MLX tasks never share a
    node's GPU. A target node that does not offer it fails at once, naming the node and the resource.
  - Fails unless the node ID seen inside the task equals the target's, the hostname the task reports matches
    O(expected_hostname) (compared short and case-insensitively, so C(BETA.local) matches C(beta)), the
    product check passes, and, with O(require_gpu=true), MLX's default device is the GPU.
  - Dead entries that Ray keeps for a restarted node (same address and hostname, old node ID) are never chosen.
    Two Alive entries at one address (a node restarted moments ago) fail as ambiguous; run M(saf_ray_membership)
    first, it waits until one remains.
  - The module never changes anything (RV(ignore:changed) is always false).
version_added: "1.0.0"
author:
  - SAF maintainers
requirements:
  - ray == 2.49.2 on the host running the module (the Ray head node)
  - mlx == 0.29.1 on the target node (imported inside the Ray task only)
attributes:
  check_mode:
    support: full
    details: In check mode the module connects and selects the target node, and returns it without submitting work.
  diff_mode:
    support: none
options:
  gcs_address:
    description:
      - Address of the Ray GCS on the head node, as V(host:port) (e.g. V(192.0.2.1:6380); SAF's GCS port is
        C(saf_ray_gcs_port), 6380, not Ray's default 6379).
      - Never V(auto); the module does not guess the cluster.
    type: str
    required: true
  driver_node_ip:
    description:
      - IP address of the node the module runs on, as the Ray node was started with (C(ray start --node-ip-address)).
      - Passed to C(ray.init) as C(_node_ip_address); must be an address of this host.
    type: str
    required: true
  expected_hostname:
    description:
      - Hostname the worker node should report (C(socket.gethostname) inside the task), e.g. V(BETA.local).
      - Compared after normalisation (lower case, first label only, trailing dot dropped).
      - Used to select the target node when O(node_address) is not given.
      - One of O(expected_hostname) and O(workers) is required; they are mutually exclusive.
    type: str
  node_address:
    description:
      - Select the target node by its Ray node IP (C(NodeManagerAddress) in C(ray.nodes)).
      - When omitted, the target is the single Alive node whose hostname matches O(expected_hostname).
    type: str
  host:
    description:
      - Inventory name of the target node, used in messages and in RV(host).
      - Defaults to O(expected_hostname).
    type: str
  workers:
    description:
      - Several targets, probed at the same time; the result lists them in RV(workers), in this order.
      - Mutually exclusive with O(expected_hostname), O(node_address) and O(host).
    type: list
    elements: dict
    suboptions:
      host:
        description: Inventory name of the worker node, used in messages.
        type: str
        required: true
      expected_hostname:
        description: As O(expected_hostname), for this worker.
        type: str
        required: true
      node_address:
        description: As O(node_address), for this worker.
        type: str
  matrix_size:
    description:
      - N of the N x N float32 matrices multiplied; with O(min_seconds), the size the growth starts from.
    type: int
    default: 1024
  min_seconds:
    description:
      - Floor, in seconds, of one timed product. While one product at N takes less, the task tries 2N (see
        O(max_matrix_bytes)); the size used is returned in RV(matrix_size).
      - V(0) keeps N = O(matrix_size), with no trial product.
      - roles/cluster_verify passes C(saf_verify_min_seconds) (0.02 s).
    type: float
    default: 0
  max_matrix_bytes:
    description:
      - Memory cap of the growth, in bytes, for A, B and C together (float32, 3 * 4 * N**2 bytes; N = 8192 takes
        805306368). The size never grows past it; O(matrix_size) itself must fit.
      - roles/cluster_verify passes C(saf_verify_max_matrix_bytes).
    type: int
    default: 1073741824
  gpu_resource:
    description:
      - Name of a Ray custom resource each task asks 1 of, besides C(num_cpus=1), e.g. V(metal_gpu) (the
        resource roles/ray_node gives each Mac with C(saf_ray_gpu_resource)).
      - A target node whose total resources lack it fails before anything is submitted, naming the node and the
        resource. Omitted or empty, the task asks for a CPU only.
      - roles/cluster_verify passes C(saf_verify_gpu_resource).
    type: str
  iterations:
    description:
      - Number of timed products (at least 1). The reported time is their median.
    type: int
    default: 5
  sample:
    description:
      - Number of product entries checked against the float64 reference (at least 1).
    type: int
    default: 16
  timeout:
    description:
      - Overall time limit in seconds, covering connection, scheduling and the run of every task.
      - A task with no result in time is force-cancelled and the module fails naming its worker.
    type: float
    default: 120
  require_gpu:
    description:
      - Fail unless MLX's default device inside the task is the GPU.
      - Set it on the Mac Studios; the Linux lab's MLX runs on the CPU backend.
    type: bool
    default: false
  min_working_set_bytes:
    description:
      - Wanted minimum, in bytes, of MLX's recommended working set on each target (RV(working_set_bytes)); a
        target below it fails, naming the figures and the fix (raise the GPU wired-memory limit).
      - V(0) asks for no check. A target without a Metal device (MLX's CPU backend) is not checked; its
        RV(working_set.verdict) is V(skipped), with the reason, and it does not fail for it.
      - roles/cluster_verify passes C(saf_verify_min_working_set_gib) in bytes.
    type: int
    default: 0
notes:
  - Ray 2.49.2 takes about 0.3 s to import, then 0.03-0.05 s for C(ray.init) to connect (measured on a Linux test host).
  - The module checks that the GCS port accepts TCP connections before C(ray.init), because Ray's own client
    retries for minutes against a down head node.
  - The task function is shipped by value (C(ray.cloudpickle.register_pickle_by_value)), because the worker
    node cannot import the module_utils packed in this module's AnsiballZ payload.
  - Each task runs with C(num_cpus=1) (and 1 of O(gpu_resource) when given) and C(max_retries=0). A task pinned
    with C(soft=False) to a node without a free CPU (or a free GPU resource) stays pending, so a task without a
    result at the timeout is force-cancelled (C(ray.cancel(force=True))) and the message reports the node's
    free CPUs (e.g. C(CPU 0 of 1)) and GPU resource.
  - A task whose worker process died (an MLX abort, a crash, an exit; Ray raises C(WorkerCrashedError), which
    carries no detail) is reported with RV(worker_died) true and the driver's RV(job_id), so roles/cluster_verify
    can read that worker's logs on its node (the exit code or signal, and their last lines).
  - An exception the module does not expect ends as a normal failed result naming the targets and the
    exception, with its traceback in C(exception), never as a MODULE FAILURE without JSON.
  - "Why the floor (O(min_seconds)): each timed product carries a fixed cost d besides the device's work
    (Ray's task is already running, but MLX still builds, commits and waits for the computation), so the
    GFLOPS figure is low by about d / (product time). A 64 x 64 product took 0.3 ms in a Ray task on a Linux
    test host (MLX CPU backend; 0.5 MFLOP, so nearly all of it overhead); an M3 Ultra, at the roughly 17 TFLOPS
    (fp16; float32 is slower) that public MLX measurements report, does the 2.1 GFLOP of a 1024 x 1024 product in
    about 0.13 ms. At the 0.02 s floor
    an overhead of 0.2 ms costs at most 1 percent."
  - "Units: O(min_seconds) and RV(seconds) in seconds (C(time.perf_counter)), O(max_matrix_bytes) and
    RV(sizing.matrix_bytes) in bytes (3 * 4 * N**2: A, B and C, 4-byte float32), RV(gflops) in 10**9
    floating-point operations per second (2 * N**3 per product, at RV(matrix_size))."
  - Every failure message starts with the worker's inventory name. With O(workers), the module's C(msg) joins
    the failed workers' messages with C(; ); each worker's own is its C(msg) in RV(workers).
  - A failed probe still returns every field known so far, so a report can be written from it.
seealso:
  - name: Ray NodeAffinitySchedulingStrategy
    description: Pinning a task to a node; with soft=False a task waits indefinitely while the node is busy.
    link: https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy.html
"""

EXAMPLES = r"""
# On the Ray head node (a play on ray_head), as roles/cluster_verify runs it: under the runtime venv's
# Python (the Ray driver must match the cluster's Python and Ray), with the environment every SAF
# driver gets. saf_node_ip, saf_node_hostname and saf_ray_gcs_port come from the inventory and the
# saf role's defaults.
- name: Check that BETA runs MLX on its GPU as a Ray task
  saf_mlx_probe:
    gcs_address: "{{ saf_node_ip }}:{{ saf_ray_gcs_port }}"
    driver_node_ip: "{{ saf_node_ip }}"
    host: BETA
    expected_hostname: "{{ hostvars['BETA'].saf_node_hostname }}"
    node_address: "{{ hostvars['BETA'].saf_node_ip }}"
    require_gpu: true
  vars:
    ansible_python_interpreter: "{{ saf_runtime_venv }}/bin/python"
  environment: "{{ saf_ray_environment }}"
  register: beta_probe

- name: Show the throughput
  ansible.builtin.debug:
    msg: "{{ beta_probe.host }}: {{ beta_probe.gflops | round(1) }} GFLOPS on {{ beta_probe.device }}"

- name: Probe every worker node at once, with one bounded wait
  saf_mlx_probe:
    gcs_address: "{{ saf_node_ip }}:{{ saf_ray_gcs_port }}"
    driver_node_ip: "{{ saf_node_ip }}"
    workers: >-
      {% set ns = namespace(workers=[]) %}{% for h in groups['ray_workers'] %}{% set ns.workers = ns.workers + [{
        'host': h, 'expected_hostname': hostvars[h].saf_node_hostname,
        'node_address': hostvars[h].saf_node_ip}] %}{% endfor %}{{ ns.workers }}
    matrix_size: "{{ saf_verify_matrix_size }}"
    min_seconds: "{{ saf_verify_min_seconds }}"
    max_matrix_bytes: "{{ saf_verify_max_matrix_bytes }}"
    # metal_gpu on the Macs, where roles/ray_node starts each node with 1 of it; "" (none) in the lab.
    gpu_resource: "{{ saf_verify_gpu_resource }}"
    iterations: "{{ saf_verify_iterations }}"
    timeout: "{{ saf_verify_timeout }}"
    require_gpu: "{{ saf_verify_require_gpu }}"
  vars:
    ansible_python_interpreter: "{{ saf_runtime_venv }}/bin/python"
  environment: "{{ saf_ray_environment }}"
  register: probes
  failed_when: false

- name: Show each worker's verdict, and the size its GFLOPS were measured at
  ansible.builtin.debug:
    msg: >-
      {{ item.host }}: {{ ('PASS, ' ~ item.gflops | round(1) ~ ' GFLOPS at N = ' ~ item.matrix_size)
                          if item.passed else 'FAIL: ' ~ item.msg }}
  loop: "{{ probes.workers | default([]) }}"

- name: Lab (MLX CPU backend), select BETA by its hostname, small matrices
  saf_mlx_probe:
    gcs_address: "{{ saf_node_ip }}:{{ saf_ray_gcs_port }}"
    driver_node_ip: "{{ saf_node_ip }}"
    expected_hostname: "{{ hostvars['BETA'].saf_node_hostname }}"
    matrix_size: 256
    timeout: 60
    require_gpu: false
  vars:
    ansible_python_interpreter: "{{ saf_runtime_venv }}/bin/python"
  environment: "{{ saf_ray_environment }}"
"""

RETURN = r"""
workers:
  description:
    - With O(workers), one entry per worker in the order given, with the per-target fields below
      (RV(host) to RV(passed), RV(passed) always present) and C(msg), the worker's own failure.
  returned: with O(workers)
  type: list
  elements: dict
  sample: [{host: beta, expected_hostname: BETA.local, executed_on: BETA.local, gflops: 214.7, passed: true}]
job_id:
  description:
    - Ray job ID of this driver (hex), e.g. C(0d000000). Ray writes C(:job_id:<job ID>) and
      C(:task_name:mlx_matmul_task) into the C(worker-*.out) and C(.err) logs of each worker that runs a probe
      task, which is how roles/cluster_verify finds the logs of a worker that died.
  returned: when connected
  type: str
  sample: 0d000000
run_seconds:
  description: Seconds from submitting the tasks to the end of the one wait for their results.
  returned: when tasks were submitted
  type: float
  sample: 0.8
host:
  description: Inventory name of the target node (O(host), or O(expected_hostname)).
  returned: with one target
  type: str
  sample: beta
expected_hostname:
  description: The O(expected_hostname) given.
  returned: with one target
  type: str
  sample: BETA.local
target_node_id:
  description: Ray node ID (56 lowercase hex characters) of the Alive node the task was pinned to.
  returned: when a target node was selected
  type: str
  sample: 3c783e1b09f5a4b1f0c2e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2
node_address:
  description: Ray node IP (C(NodeManagerAddress)) of the target node.
  returned: when a target node was selected
  type: str
  sample: 192.0.2.2
target_hostname:
  description: Hostname Ray records for the target node (C(NodeManagerHostname)), raw.
  returned: when a target node was selected
  type: str
  sample: BETA.local
node_resources:
  description:
    - Total logical resources of the target node (C(Resources) of its C(ray.nodes) entry; C(memory) and
      C(object_store_memory) in bytes), e.g. its C(metal_gpu).
  returned: when a target node was selected
  type: dict
  sample: {CPU: 28.0, metal_gpu: 1.0, memory: 180000000000.0}
error_type:
  description: Class name of the Ray exception the task failed with, e.g. C(WorkerCrashedError), C(TaskUnschedulableError).
  returned: when the task failed in Ray
  type: str
  sample: WorkerCrashedError
worker_died:
  description:
    - Whether the worker process running the task died (C(WorkerCrashedError) or C(OutOfMemoryError)). Its exit
      code or signal and its log lines are on its node, under C(saf_ray_temp_dir/session_latest/logs/).
  returned: when the task failed in Ray
  type: bool
  sample: true
alive_nodes:
  description: All Alive Ray nodes when the target was selected.
  returned: when connected
  type: list
  elements: dict
  contains:
    node_id:
      description: Ray node ID.
      type: str
    address:
      description: Ray node IP.
      type: str
    hostname:
      description: Hostname recorded by Ray.
      type: str
    alive:
      description: Always true here.
      type: bool
    is_head:
      description: Whether this is the head node.
      type: bool
    resources:
      description: Total logical resources of the node (C(CPU), C(GPU), C(memory) in bytes, ...).
      type: dict
connect_seconds:
  description: Seconds taken to connect the driver (TCP check of the GCS plus C(ray.init)).
  returned: when connected
  type: float
  sample: 0.45
executed_on:
  description: Hostname reported inside the task (C(socket.gethostname) on the node that ran it), raw.
  returned: when the task ran
  type: str
  sample: BETA.local
node_id:
  description: Ray node ID seen inside the task (C(ray.get_runtime_context) C(.get_node_id)).
  returned: when the task ran
  type: str
  sample: 3c783e1b09f5a4b1f0c2e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2
device:
  description: MLX default device inside the task, as C(str) of C(mx.default_device).
  returned: when the task ran
  type: str
  sample: Device(gpu, 0)
device_kind:
  description: Short kind of RV(device).
  returned: when the task ran
  type: str
  sample: gpu
working_set_bytes:
  description:
    - MLX's recommended working set of the node's Metal device in bytes (C(max_recommended_working_set_size) of
      C(mx.metal.device_info)); about 75% of the unified memory unless C(iogpu.wired_limit_mb) raised it.
    - None (null) without a Metal device (MLX's CPU backend).
  returned: when the task ran
  type: int
  sample: 412316860416
working_set:
  description: The check of RV(working_set_bytes) against O(min_working_set_bytes).
  returned: when the task ran
  type: dict
  contains:
    verdict:
      description: V(passed), V(failed) or V(skipped) (no minimum set, or no Metal device).
      type: str
      sample: skipped
    reason:
      description: Both figures in GiB, or why there was nothing to check.
      type: str
      sample: MLX reports no Metal device here (its CPU backend), so no working set
versions:
  description: Versions inside the task.
  returned: when the task ran
  type: dict
  contains:
    python:
      description: C(platform.python_version).
      type: str
      sample: 3.9.18
    ray:
      description: C(ray.__version__).
      type: str
      sample: 2.49.2
    mlx:
      description: C(mx.__version__).
      type: str
      sample: 0.29.1
matrix_size:
  description: N of the N x N float32 matrices the GFLOPS were measured at (after growth, see RV(sizing)).
  returned: when the task ran
  type: int
  sample: 8192
sizing:
  description: How RV(matrix_size) was reached.
  returned: when the task ran
  type: dict
  contains:
    start:
      description: The size the growth started from (O(matrix_size)).
      type: int
      sample: 1024
    min_seconds:
      description: O(min_seconds), seconds.
      type: float
      sample: 0.02
    max_bytes:
      description: O(max_matrix_bytes), bytes.
      type: int
      sample: 1073741824
    matrix_bytes:
      description: Bytes of A, B and C at RV(matrix_size), 3 * 4 * N**2.
      type: int
      sample: 805306368
    stopped_by:
      description:
        - V(fixed) (O(min_seconds) is 0), V(floor) (one product at RV(matrix_size) took at least O(min_seconds))
          or V(cap) (it took less, but twice the size would pass O(max_matrix_bytes)).
      type: str
      sample: floor
    trials:
      description: Each size tried and the seconds of its one timed product, in order (empty when V(fixed)).
      type: list
      elements: dict
      sample: [{matrix_size: 1024, seconds: 0.0004}, {matrix_size: 2048, seconds: 0.0021}]
iterations:
  description: Number of timed products.
  returned: when the task ran
  type: int
  sample: 5
seconds:
  description: Wall time of each timed product, in seconds (C(time.perf_counter) around C(a @ b) and C(mx.eval)).
  returned: when the task ran
  type: list
  elements: float
  sample: [0.0101, 0.0099, 0.0100, 0.0102, 0.0100]
median_seconds:
  description: Median of RV(seconds), in seconds.
  returned: when the task ran
  type: float
  sample: 0.01
gflops:
  description: Throughput from the median, in GFLOPS, = 2 * N**3 / median_seconds / 1e9.
  returned: when the task ran
  type: float
  sample: 214.7483648
checked_entries:
  description: Number of product entries checked against the float64 reference.
  returned: when the task ran
  type: int
  sample: 16
max_abs_error:
  description: Largest |c_ij - ref_ij| over the checked entries (ref in float64 with math.fsum).
  returned: when the task ran
  type: float
  sample: 1.1e-05
error_bound:
  description:
    - Bound gamma_n * sum_k |a_ik*b_kj| of the checked entry closest to (or furthest over) its bound.
  returned: when the task ran
  type: float
  sample: 0.0024
max_error_ratio:
  description: Largest abs error / bound over the checked entries; the check passes when it is at most 1.
  returned: when the task ran
  type: float
  sample: 0.0046
exception:
  description: Traceback of an error the module did not expect (it then fails, naming the targets and the error).
  returned: on an unexpected error
  type: str
passed:
  description:
    - Whether every check passed (node ID, hostname, product, GPU when required).
    - With O(workers), whether every worker passed.
  returned: when the task ran, and always with O(workers)
  type: bool
  sample: true
"""

import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.saf_ray import (
    RAY_BUILTIN_RESOURCES,
    AmbiguousTarget,
    ConnectError,
    SafRayError,
    TargetNotFound,
    TaskFailed,
    TaskTimeout,
    check_node_resource,
    check_probe_report,
    connect,
    import_ray,
    json_safe,
    matmul_bytes,
    node_id_hex,
    normalise_nodes,
    stdout_to_stderr,
    mlx_matmul_task,
    working_set_check,
    WORKING_SET_FAILED,
    node_summary,
    alive_nodes,
    select_target,
    validate_node_id,
)

#: Seed of the MLX PRNG key the matrices are drawn from (results are reproducible per node).
PROBE_SEED = 20250929

ARGUMENT_SPEC = dict(
    gcs_address=dict(type='str', required=True),
    driver_node_ip=dict(type='str', required=True),
    expected_hostname=dict(type='str'),
    node_address=dict(type='str'),
    host=dict(type='str'),
    workers=dict(
        type='list',
        elements='dict',
        options=dict(
            host=dict(type='str', required=True),
            expected_hostname=dict(type='str', required=True),
            node_address=dict(type='str'),
        ),
    ),
    matrix_size=dict(type='int', default=1024),
    min_seconds=dict(type='float', default=0),
    max_matrix_bytes=dict(type='int', default=1073741824),
    gpu_resource=dict(type='str'),
    iterations=dict(type='int', default=5),
    sample=dict(type='int', default=16),
    timeout=dict(type='float', default=120),
    require_gpu=dict(type='bool', default=False),
    min_working_set_bytes=dict(type='int', default=0),
)

MUTUALLY_EXCLUSIVE = [('workers', 'expected_hostname'), ('workers', 'node_address'), ('workers', 'host')]
REQUIRED_ONE_OF = [('workers', 'expected_hostname')]


def _targets(params):
    """The nodes to probe, as ``[{host, expected_hostname, node_address}]`` in the order given."""
    if params['workers'] is not None:
        return [dict(item) for item in params['workers']]
    return [dict(host=params['host'] or params['expected_hostname'],
                 expected_hostname=params['expected_hostname'], node_address=params['node_address'])]


def _check_params(params, label):
    """Return a failure message for out-of-range options, or None."""
    if params['workers'] is not None and not params['workers']:
        return 'workers must list at least one worker node, got an empty list'
    for name, low in (('matrix_size', 1), ('iterations', 1), ('sample', 1), ('min_working_set_bytes', 0)):
        if params[name] < low:
            return '%s: %s must be >= %d, got %d' % (label, name, low, params[name])
    if not params['timeout'] > 0:
        return '%s: timeout must be > 0 seconds, got %s' % (label, params['timeout'])
    if not 0 <= params['min_seconds'] < float('inf'):
        return '%s: min_seconds must be a number of seconds >= 0, got %s' % (label, params['min_seconds'])
    needed = matmul_bytes(params['matrix_size'])
    if needed > params['max_matrix_bytes']:
        return ('%s: matrix_size %d needs %d bytes for A, B and C (3 x 4 x N**2, float32), above max_matrix_bytes '
                '%d; lower matrix_size or raise max_matrix_bytes'
                % (label, params['matrix_size'], needed, params['max_matrix_bytes']))
    resource = params['gpu_resource']
    if resource and (resource != resource.strip() or resource in RAY_BUILTIN_RESOURCES or resource.startswith('node:')):
        return ("%s: gpu_resource must name a custom Ray resource (no blanks around it, not one of %s, not "
                "node:...), got %r" % (label, ', '.join(RAY_BUILTIN_RESOURCES), resource))
    hosts = [target['host'] for target in _targets(params)]
    twice = sorted(set(host for host in hosts if hosts.count(host) > 1))
    if twice:
        return '%s: workers lists %s more than once' % (label, ', '.join(twice))
    return None


def _timeout_message(cluster, row, target, params):
    """Why a task had no result in time: the target node's free resources, or an over-long matmul."""
    available = cluster.available_resources(row['target_node_id'])
    totals = target.get('Resources') or {}
    resource = params['gpu_resource']
    if available is None:
        free = 'unknown'
    else:
        # Ray leaves a resource out of the per-node map when none of it is free.
        free = 'CPU %g of %g' % (available.get('CPU', 0.0), totals.get('CPU', 0.0))
        if resource:
            free += ', %s %g of %g' % (resource, available.get(resource, 0.0), totals.get(resource, 0.0))
        free += '; all available: %s' % (available,)
    wanted = 'num_cpus=1' + (' and %s=1' % resource if resource else '')
    if params['min_seconds'] > 0:
        work = ('matmul (from %dx%d, doubling while one product took under %g s, up to %d bytes)'
                % (params['matrix_size'], params['matrix_size'], params['min_seconds'], params['max_matrix_bytes']))
    else:
        work = '%dx%d matmul' % (params['matrix_size'], params['matrix_size'])
    return ('%s: the MLX probe task did not finish within %g s on Ray node %s (%s): either the node '
            'had no free resources for %s (available there: %s) or the %s ran '
            'longer than the timeout; the task was cancelled'
            % (row['host'], params['timeout'], row['target_node_id'], row['node_address'], wanted, free, work))


def _report_fields(report):
    """The per-worker result fields taken from the task's report."""
    node_id = report.get('node_id')
    try:
        node_id = node_id_hex(node_id) if node_id is not None else None
    except ValueError:
        node_id = str(node_id)
    return dict(
        executed_on=report.get('hostname'),
        node_id=node_id,
        device=report.get('device'),
        device_kind=report.get('device_kind'),
        versions=report.get('versions'),
        matrix_size=report.get('matrix_size'),
        sizing=report.get('sizing'),
        iterations=report.get('iterations'),
        seconds=report.get('seconds'),
        median_seconds=report.get('median_seconds'),
        gflops=report.get('gflops'),
        checked_entries=report.get('checked'),
        max_abs_error=report.get('max_abs_error'),
        error_bound=report.get('error_bound'),
        max_error_ratio=report.get('max_error_ratio'),
        working_set_bytes=report.get('working_set_bytes'),
    )


def run_probes(module):
    """Do the work; return ``(error_message_or_None, result_dict, rows)``. Always disconnects.

    ``rows`` has one dict per target (its RV(workers) entry); ``msg`` in a row is its own failure.
    Every task is submitted before any result is awaited, and one wait of at most O(timeout)
    (counted from the start, connection included) covers them all.
    """
    params = module.params
    targets = _targets(params)
    label = ', '.join(target['host'] or target['expected_hostname'] or '?' for target in targets)
    rows = [dict(host=target['host'], expected_hostname=target['expected_hostname'], passed=False)
            for target in targets]
    result = dict(changed=False)

    def fail_all(message):
        for row in rows:
            row['msg'] = message
        return message, result, rows

    problem = _check_params(params, label)
    if problem:
        return fail_all(problem)

    try:
        import_ray()
    except ImportError:
        result['exception'] = traceback.format_exc()
        return fail_all('%s: %s' % (label, missing_required_lib('ray')))

    timeout = params['timeout']
    deadline = time.monotonic() + timeout
    cluster = None
    chosen = []  # (row, Ray node entry) of every target that has a node to run on
    try:
        try:
            cluster = connect(params['gcs_address'], params['driver_node_ip'], timeout)
        except (ConnectError, ValueError) as exc:
            return fail_all('%s: cannot connect to the Ray cluster at %s as a driver on %s: %s'
                            % (label, params['gcs_address'], params['driver_node_ip'], exc))
        result['connect_seconds'] = cluster.connect_seconds
        if getattr(cluster, 'job_id', None):
            result['job_id'] = cluster.job_id

        nodes = normalise_nodes(cluster.nodes())  # node IDs as hex strings, whatever Ray gave
        result['alive_nodes'] = [node_summary(node) for node in alive_nodes(nodes)]
        for row, target in zip(rows, targets):
            try:
                # The node must be at its address AND report the expected hostname: a hostname that
                # matches no live node fails here, before any work is submitted.
                node = select_target(nodes, address=target['node_address'],
                                     hostname=target['expected_hostname'])
                node_id = validate_node_id(node.get('NodeID'))
            except (TargetNotFound, AmbiguousTarget, ValueError) as exc:
                row['msg'] = '%s: cannot choose the Ray node to probe: %s' % (row['host'], exc)
                continue
            row.update(target_node_id=node_id, node_address=node.get('NodeManagerAddress'),
                       target_hostname=node.get('NodeManagerHostname'),
                       node_resources=dict(node.get('Resources') or {}))
            if params['gpu_resource']:
                # Without it the pinned task would be infeasible: Ray fails it at once naming neither.
                lacking = check_node_resource(node, params['gpu_resource'], 1)
                if lacking:
                    row['msg'] = '%s: cannot run the MLX probe task there: %s' % (row['host'], lacking)
                    continue
            chosen.append((row, node))

        if module.check_mode:
            for row, _node in chosen:
                row['msg'] = ('%s: check mode: selected Ray node %s (%s); no task submitted'
                              % (row['host'], row['target_node_id'], row['node_address']))
        elif chosen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for row, _node in chosen:
                    row['msg'] = ('%s: no time left to run the task after connecting (timeout %g s)'
                                  % (row['host'], timeout))
            else:
                args = (params['matrix_size'], params['iterations'], params['sample'], PROBE_SEED,
                        params['min_seconds'], params['max_matrix_bytes'])
                extra = {'resources': {params['gpu_resource']: 1}} if params['gpu_resource'] else {}
                started = time.monotonic()
                outcomes = cluster.run_pinned_many(
                    mlx_matmul_task, [(row['target_node_id'], args) for row, _node in chosen],
                    timeout=remaining, num_cpus=1, **extra)
                result['run_seconds'] = time.monotonic() - started
                for (row, node), outcome in zip(chosen, outcomes):
                    if isinstance(outcome, TaskTimeout):
                        row['msg'] = _timeout_message(cluster, row, node, params)
                    elif isinstance(outcome, (TaskFailed, SafRayError)):
                        row['msg'] = ('%s: the MLX probe task on Ray node %s (%s) failed: %s'
                                      % (row['host'], row['target_node_id'], row['node_address'], outcome))
                        if isinstance(outcome, TaskFailed) and outcome.error_type:
                            row.update(error_type=outcome.error_type, worker_died=outcome.worker_died)
                    else:
                        row.update(_report_fields(outcome))
                        problems = check_probe_report(outcome, row['target_node_id'], row['expected_hostname'],
                                                      params['require_gpu'])
                        verdict, reason = working_set_check(outcome.get('working_set_bytes'),
                                                            params['min_working_set_bytes'])
                        row['working_set'] = dict(verdict=verdict, reason=reason)
                        if verdict == WORKING_SET_FAILED:
                            problems.append(reason)
                        row['passed'] = not problems
                        if problems:
                            row['msg'] = '%s: MLX probe failed: %s' % (row['host'], '; '.join(problems))
    finally:
        if cluster is not None:
            cluster.shutdown()

    if module.check_mode:  # every row has a message; only a target without a node to run on failed
        runnable = set(id(row) for row, _node in chosen)
        failures = [row['msg'] for row in rows if id(row) not in runnable]
    else:  # a row that passed has no message
        failures = [row['msg'] for row in rows if 'msg' in row]
    return ('; '.join(failures) if failures else None), result, rows


def run_probe(module):
    """The module's result: ``(error_message_or_None, result_dict)``.

    With O(workers), RV(workers) holds one entry per worker and RV(passed) is true only when every
    worker passed; with one target (O(expected_hostname)), that target's fields are at the top level.
    """
    error, result, rows = run_probes(module)
    if module.params['workers'] is not None:
        result.update(workers=rows, passed=all(row['passed'] for row in rows))
        if module.check_mode and not error:
            result['msg'] = '; '.join(row['msg'] for row in rows)
    else:
        result.update(rows[0])
        if error:
            result.pop('msg', None)
        if not result.get('passed') and 'executed_on' not in result:
            del result['passed']  # "passed" is returned when the task ran
    return error, result


def _label(params):
    """The targets' names for a message, from whatever options there are."""
    try:
        return ', '.join(target['host'] or target['expected_hostname'] or '?' for target in _targets(params))
    except Exception:
        return '?'


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=MUTUALLY_EXCLUSIVE, required_one_of=REQUIRED_ONE_OF)
    try:
        with stdout_to_stderr():  # Ray prints cluster errors to stdout; keep it for the JSON result
            error, result = run_probe(module)
        # A value of a type JSON cannot carry (a Ray NodeID object, bytes) would make exit_json raise
        # TypeError and end the module without its JSON (MODULE FAILURE).
        result = json_safe(result)
    except Exception as exc:  # what the module does not expect still ends as a result, naming the targets
        module.fail_json(msg='%s: the MLX probe stopped on an unexpected error: %s: %s'
                             % (_label(module.params), type(exc).__name__, exc),
                         exception=traceback.format_exc(), changed=False)
    if error:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
