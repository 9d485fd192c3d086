# -*- coding: utf-8 -*-
# SAF: Ansible provisioning of a Ray 2.49.2 + MLX 0.29.1 cluster.
"""Ray cluster helpers shared by the ``saf_ray_membership`` and ``saf_mlx_probe`` modules.

The module runs ON THE RAY HEAD NODE under the cluster venv's Python 3.9, so
everything here is Python 3.9 compatible.  It is also imported by the unit
tests on the controller (Python 3.11, no Ray, no MLX): nothing here imports
``ray`` or ``mlx`` at import time.  Ray is imported through :func:`import_ray`
(which sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` first) and MLX only inside
:func:`mlx_matmul_task`, which runs in a Ray worker process on the target node.

Shape of a ``ray.nodes()`` entry (Ray 2.49.2, observed)::

    {"NodeID": "<56 lowercase hex>", "Alive": True,
     "NodeManagerAddress": "192.0.2.2", "NodeManagerHostname": "BETA.local",
     "NodeManagerPort": 44383, "ObjectManagerPort": 35165,
     "DeathReason": 0, "DeathReasonMessage": "",
     "Resources": {"CPU": 2.0, "memory": ..., "node:192.0.2.2": 1.0, ...},
     "Labels": {"ray.io/node-id": "<node ID>"}, ...}

A worker node that was restarted keeps its old entry (``Alive: False``, empty
``Resources``, ``DeathReasonMessage`` e.g. "health check failed due to missing
too many heartbeats") next to the new one (new node ID, same address and
hostname).  Everything below therefore filters on ``Alive`` first.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import ipaddress
import logging
import math
import os
import random
import socket
import sys
import time

__metaclass__ = type

#: Ray node IDs are 28 bytes, shown as 56 lowercase hex characters
#: (``ray.NodeID.size() == 28``; ``NodeID.hex()`` is lowercase).
NODE_ID_BYTES = 28
NODE_ID_HEX_LEN = 2 * NODE_ID_BYTES
_HEX_LOWER = frozenset('0123456789abcdef')
#: The Nil node ID (all bytes 0xff).  Ray 2.49.2 aborts the driver process
#: (``Check failed: !node_id.IsNil()`` in accessor.cc) when a hard
#: NodeAffinitySchedulingStrategy names it -- and a malformed hex string is
#: decoded to Nil, which is why :func:`validate_node_id` exists.
NIL_NODE_ID = 'f' * NODE_ID_HEX_LEN

#: Unit roundoff of IEEE 754 binary32 (float32), round-to-nearest: u = 2**-24
#: (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §2.1, Table 2.1).
FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24

#: Ray namespace used by the SAF drivers (keeps named actors, if any, apart).
RAY_NAMESPACE = 'saf'

#: Seconds between two ``ray.init`` attempts while the head node is still starting.
CONNECT_RETRY_SECONDS = 1.0

#: Ray refuses multi-node clusters on macOS/Windows unless this is set; Ray reads
#: it once, at ``import ray`` time (``ray._private.ray_constants.ENABLE_RAY_CLUSTER``).
RAY_CLUSTER_ENV = 'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'


class SafRayError(Exception):
    """Base class of the errors raised by this module."""


class TargetNotFound(SafRayError):
    """No Alive Ray node matches the requested address or hostname.

    ``live`` holds the Alive ``ray.nodes()`` entries that were considered.
    """

    def __init__(self, msg, live=None):
        super(TargetNotFound, self).__init__(msg)
        self.live = list(live or [])


class AmbiguousTarget(SafRayError):
    """Several Alive Ray nodes match; ``matches`` holds their ``ray.nodes()`` entries."""

    def __init__(self, msg, matches=None):
        super(AmbiguousTarget, self).__init__(msg)
        self.matches = list(matches or [])


class ConnectError(SafRayError):
    """The driver could not connect to the Ray cluster (GCS unreachable, bad driver IP, ray.init failed)."""


class TaskTimeout(SafRayError):
    """The pinned Ray task did not finish within the timeout (it was cancelled)."""


class TaskFailed(SafRayError):
    """The pinned Ray task failed: unschedulable, raised inside the worker, or its worker died.

    ``error_type`` is the class name of Ray's exception (e.g. ``WorkerCrashedError``) and
    ``worker_died`` whether it means the worker process running the task died
    (:data:`WORKER_DEATH_ERRORS`), so its logs on the node are worth reading.
    """

    def __init__(self, msg, error_type=None, worker_died=False):
        super(TaskFailed, self).__init__(msg)
        self.error_type = error_type
        self.worker_died = bool(worker_died)


#: Ray exceptions (class names) that mean the worker process running the task died: Ray 2.49.2
#: raises ``WorkerCrashedError`` for a crash, an abort or an exit (the raylet only sees the
#: worker's connection drop, and the exception carries no detail: "The worker died unexpectedly
#: while executing this task. Check python-core-worker-*.log files for more information."), and
#: ``OutOfMemoryError`` when its memory monitor killed the worker.
WORKER_DEATH_ERRORS = ('WorkerCrashedError', 'OutOfMemoryError')


# ---------------------------------------------------------------------------
# Names and IDs
# ---------------------------------------------------------------------------

def normalise_hostname(name):
    """Return the short, lower-case form of a host name, for comparisons.

    ``'BETA.local'`` -> ``'beta'``; ``'beta.tailnet-1234.ts.net.'`` -> ``'beta'``;
    ``'Beta'`` -> ``'beta'``.  Rule: strip blanks, drop trailing dots (the DNS
    root), lower-case (DNS names are case-insensitive, RFC 4343), keep the first
    label.  An IP address literal is returned unchanged (in its canonical form)
    since it has no domain to drop.

    :raises ValueError: ``name`` is None, not a string, or empty after stripping.
    """
    if name is None or not isinstance(name, str):
        raise ValueError('hostname must be a non-empty string, got %r' % (name,))
    text = name.strip().rstrip('.').strip()
    if not text:
        raise ValueError('hostname must be a non-empty string, got %r' % (name,))
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    short = text.split('.', 1)[0].lower()
    if not short:
        raise ValueError('hostname %r has an empty first label' % (name,))
    return short


def node_id_hex(value):
    """Return a Ray node ID as its hex string, whatever type the Ray release hands it over in.

    The one place node IDs are normalised.  Ray 2.49.2 gives strings (``ray.nodes()``'s
    ``NodeID``, ``get_runtime_context().get_node_id()``), but its own ``NodeID`` objects (e.g.
    the deprecated ``get_runtime_context().node_id``) and other releases' return values are
    objects with a ``.hex()`` method; raw IDs are 28 bytes.  A string is returned unchanged (it is
    checked by :func:`validate_node_id`), bytes and ``bytearray`` as ``.hex()``, an object with a
    callable ``.hex()`` returning a string as that string.

    :raises ValueError: anything else (None included), naming the value and its type.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    method = getattr(value, 'hex', None)
    if callable(method) and not isinstance(value, (int, float, bool)):
        try:
            text = method()
        except Exception as exc:
            raise ValueError('Ray node ID %r (%s): its hex() failed: %s' % (value, type(value).__name__, exc))
        if isinstance(text, str):
            return text
    raise ValueError('Ray node ID must be a string of %d lowercase hex characters (or %d bytes, or an object '
                     'with .hex() such as ray.NodeID), got %r of type %s'
                     % (NODE_ID_HEX_LEN, NODE_ID_BYTES, value, type(value).__name__))


def normalise_nodes(nodes):
    """Return copies of ``ray.nodes()`` entries whose ``NodeID`` is a hex string (:func:`node_id_hex`).

    An ID that cannot be converted is kept as its ``str`` (so results stay JSON) and is refused
    later by :func:`validate_node_id`; a missing one stays missing.
    """
    out = []
    for node in nodes or []:
        entry = dict(node)
        if entry.get('NodeID') is not None:
            try:
                entry['NodeID'] = node_id_hex(entry['NodeID'])
            except ValueError:
                entry['NodeID'] = str(entry['NodeID'])
        out.append(entry)
    return out


def json_safe(value):
    """``value`` with everything JSON cannot carry converted, so an Ansible result always encodes.

    Dicts (keys as strings), lists, tuples and sets are walked; str, int, float, bool and None are
    kept; a node ID object or bytes become hex (:func:`node_id_hex`); anything else its ``str``.
    ansible-core's result encoder raises ``TypeError: Value of unknown type`` on a foreign object,
    and the module would end without its JSON (MODULE FAILURE).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return dict((str(key), json_safe(item)) for key, item in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    try:
        return node_id_hex(value)
    except ValueError:
        return str(value)


def validate_node_id(node_id):
    """Return ``node_id`` if it is a well-formed, non-Nil Ray node ID.

    A Ray node ID is 28 bytes, written as 56 lowercase hex characters (as
    ``ray.nodes()`` and ``ray.get_runtime_context().get_node_id()`` give it).
    Ray 2.49.2 *aborts the whole driver process* (C++ check failure, no Python
    exception) when ``NodeAffinitySchedulingStrategy(node_id=..., soft=False)``
    gets a malformed ID or the Nil ID (``'f' * 56``), so validate before
    scheduling.  Upper-case hex is rejected although Ray would decode it: SAF
    compares IDs as strings, and Ray never produces upper case.

    A ``ray.NodeID`` object or raw bytes are accepted as their hex (:func:`node_id_hex`), and
    the hex string is returned.

    :raises ValueError: naming the value seen and what is wanted.
    """
    node_id = node_id_hex(node_id)
    if len(node_id) != NODE_ID_HEX_LEN:
        raise ValueError('Ray node ID %r has %d characters, wanted %d lowercase hex characters (%d bytes)'
                         % (node_id, len(node_id), NODE_ID_HEX_LEN, NODE_ID_BYTES))
    bad = sorted(set(node_id) - _HEX_LOWER)
    if bad:
        raise ValueError('Ray node ID %r contains %s, wanted only lowercase hex characters 0-9a-f'
                         % (node_id, ''.join(bad)))
    if node_id == NIL_NODE_ID:
        raise ValueError('Ray node ID %r is the Nil ID, which names no node' % (node_id,))
    return node_id


# ---------------------------------------------------------------------------
# ray.nodes() handling
# ---------------------------------------------------------------------------

def alive_nodes(nodes):
    """Return the entries of ``ray.nodes()`` whose ``Alive`` is true, in input order.

    Dead entries (a restarted worker node keeps its old, dead entry with the
    same address and hostname) are dropped so they are never chosen.
    """
    return [node for node in (nodes or []) if node.get('Alive') is True]


def node_summary(node):
    """Return a small JSON-friendly dict describing one ``ray.nodes()`` entry.

    Keys: ``node_id``, ``address`` (NodeManagerAddress, the node IP),
    ``hostname`` (NodeManagerHostname, raw), ``alive`` (bool), ``is_head``
    (has the ``node:__internal_head__`` resource), ``resources`` (total
    logical resources, e.g. ``{"CPU": 2.0, "GPU": 1.0, "memory": <bytes>}``).
    """
    resources = dict(node.get('Resources') or {})
    node_id = node.get('NodeID')
    if node_id is not None:
        try:
            node_id = node_id_hex(node_id)
        except ValueError:
            node_id = str(node_id)
    return {
        'node_id': node_id,
        'address': node.get('NodeManagerAddress'),
        'hostname': node.get('NodeManagerHostname'),
        'alive': node.get('Alive') is True,
        'is_head': 'node:__internal_head__' in resources,
        'resources': resources,
    }


def describe_nodes(nodes):
    """Return ``'address hostname node_id'`` lines joined by ``'; '`` (or ``'none'``)."""
    parts = ['%s %s %s' % (n.get('NodeManagerAddress'), n.get('NodeManagerHostname'), n.get('NodeID'))
             for n in nodes]
    return '; '.join(parts) if parts else 'none'


def select_target(nodes, address=None, hostname=None):
    """Choose exactly one Alive node from ``ray.nodes()`` output.

    Match on ``NodeManagerAddress == address`` when ``address`` is given and on
    ``normalise_hostname(NodeManagerHostname) == normalise_hostname(hostname)`` when
    ``hostname`` is given (both must hold when both are given). Dead entries never match.

    :returns: the matching ``ray.nodes()`` entry (dict).
    :raises ValueError: neither ``address`` nor ``hostname`` given.
    :raises TargetNotFound: no Alive match; the message lists every live node as
        ``address hostname node_id``.
    :raises AmbiguousTarget: several Alive matches; the message names them.
    """
    live = alive_nodes(nodes)
    if not address and not hostname:
        raise ValueError('select_target needs an address or a hostname')
    wanted = normalise_hostname(hostname) if hostname else None
    what = ' and '.join(
        ([('NodeManagerAddress %s' % address.strip())] if address else [])
        + ([('hostname %s (normalised %s)' % (hostname, wanted))] if hostname else []))

    def match(node):
        if address and node.get('NodeManagerAddress') != address.strip():
            return False
        if wanted:
            try:
                return normalise_hostname(node.get('NodeManagerHostname')) == wanted
            except ValueError:
                return False
        return True

    matches = [node for node in live if match(node)]
    if not matches:
        dead = [node for node in (nodes or []) if node.get('Alive') is not True and match(node)]
        extra = ''
        if dead:
            extra = ' (%d dead entr%s with that %s ignored: %s)' % (
                len(dead), 'y' if len(dead) == 1 else 'ies', 'address' if address else 'hostname',
                ', '.join(str(n.get('NodeID')) for n in dead))
        raise TargetNotFound('no Alive Ray node has %s%s; live nodes (address hostname node_id): %s'
                             % (what, extra, describe_nodes(live)), live=live)
    if len(matches) > 1:
        if address:
            hint = ('a worker node restarted moments ago keeps its old entry Alive until the GCS health '
                    'check declares it dead (about 11-15 s); wait for one node to remain')
        else:
            hint = 'select the node by its address instead'
        raise AmbiguousTarget('%d Alive Ray nodes have %s: %s; %s'
                              % (len(matches), what, describe_nodes(matches), hint), matches=matches)
    return matches[0]


# ---------------------------------------------------------------------------
# Arithmetic of the probe
# ---------------------------------------------------------------------------

def matmul_flops(n):
    """Floating-point operations of an N x N by N x N matrix product: ``2 * n**3``.

    Each of the n**2 entries takes n multiplications and n - 1 additions; the
    conventional count rounds that to 2n per entry (as LINPACK/HPL and vendor
    GFLOPS figures do).

    :raises ValueError: ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError('matrix size must be a positive integer, got %r' % (n,))
    return 2 * n ** 3


def gflops(n, seconds):
    """Throughput in GFLOPS (10**9 floating-point operations per second).

    ``gflops(n, seconds) = 2 * n**3 / seconds / 1e9``; e.g.
    ``gflops(1024, 0.01) == 214.7483648``.

    :param n: matrix size (N of N x N).
    :param seconds: wall time of one product, in seconds, > 0.
    :raises ValueError: ``seconds`` is not > 0 (or not finite), or ``n`` invalid.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError('seconds must be a finite number > 0, got %r' % (seconds,))
    return matmul_flops(n) / seconds / 1e9


def median(values):
    """Median of a non-empty sequence of numbers (mean of the middle two when even).

    :raises ValueError: ``values`` is empty.
    """
    ordered = sorted(values)
    count = len(ordered)
    if count == 0:
        raise ValueError('median of an empty sequence')
    mid = count // 2
    if count % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def matmul_error_bound(n):
    """Rigorous relative forward error bound gamma_n for a float32 dot product of length n.

    ``gamma_n = n*u / (1 - n*u)`` with ``u = 2**-24`` (float32 unit roundoff).
    Source: N. J. Higham, *Accuracy and Stability of Numerical Algorithms*,
    2nd ed., SIAM 2002, §3.1, eq. (3.5): the computed inner product satisfies
    ``|x^T y - fl(x^T y)| <= gamma_n |x|^T |y|`` for any order of summation
    (so for any BLAS blocking).  An entry c_ij of a computed product therefore
    passes when ``|c_ij - ref_ij| <= gamma_n * sum_k |a_ik * b_kj|``.

    :raises ValueError: ``n`` < 1, or ``n*u >= 1`` (the bound does not exist).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError('dot product length must be a positive integer, got %r' % (n,))
    nu = n * FLOAT32_UNIT_ROUNDOFF
    if nu >= 1:
        raise ValueError('n*u = %r >= 1: no error bound for n = %d' % (nu, n))
    return nu / (1.0 - nu)


def sample_indices(n, count, seed):
    """Deterministic sample of ``min(count, n*n)`` distinct ``(i, j)`` index pairs of an N x N matrix.

    Pairs are drawn without replacement by ``random.Random(seed).sample`` over
    ``range(n*n)`` and returned sorted; the same (n, count, seed) gives the same
    list on every run of the same Python version.

    :raises ValueError: ``n`` < 1 or ``count`` < 0.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError('matrix size must be a positive integer, got %r' % (n,))
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError('sample count must be an integer >= 0, got %r' % (count,))
    total = n * n
    flat = random.Random(seed).sample(range(total), min(count, total))
    return sorted(divmod(k, n) for k in flat)


def check_entry(row, col, value, gamma):
    """Check one product entry against a float64 reference.

    :param row: the N float32 values of row i of A (as Python floats).
    :param col: the N float32 values of column j of B (as Python floats).
    :param value: the computed c_ij (float32 as Python float).
    :param gamma: :func:`matmul_error_bound` of N.
    :returns: ``(ok, abs_error, bound, reference)``; each product a_ik*b_kj of
        two float32 values is exact in float64 (24 + 24 bits < 53), and
        ``math.fsum`` returns the correctly rounded float64 sum of them.
    """
    products = [x * y for x, y in zip(row, col)]
    reference = math.fsum(products)
    bound = gamma * math.fsum(abs(p) for p in products)
    error = abs(value - reference)
    return (error <= bound, error, bound, reference)


# ---------------------------------------------------------------------------
# Size of the probe: grow N until the device, not the dispatch, is timed
# ---------------------------------------------------------------------------

#: Bytes of one float32 value (IEEE 754 binary32).
FLOAT32_BYTES = 4
#: N x N float32 matrices the probe holds at its size: A, B and the product C.
PROBE_MATRICES = 3
#: Why the probe stopped at its size (``sizing.stopped_by``): ``fixed`` (no floor, N as given),
#: ``floor`` (one product at N took at least the floor), ``cap`` (shorter, but 2N would not fit).
SIZE_FIXED = 'fixed'
SIZE_FLOOR = 'floor'
SIZE_CAP = 'cap'


def matmul_bytes(n):
    """Memory of the probe's matrices at size N, in bytes: ``3 * 4 * n**2`` (A, B and C, float32).

    ``matmul_bytes(1024) == 12582912`` (12 MiB); ``matmul_bytes(8192) == 805306368`` (768 MiB).

    :raises ValueError: ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError('matrix size must be a positive integer, got %r' % (n,))
    return PROBE_MATRICES * FLOAT32_BYTES * n * n


def next_matrix_size(n):
    """The size the probe tries after ``n``: ``2 * n``.

    From the starting size s (``saf_verify_matrix_size``) the probe tries s, 2s, 4s, ...: powers of
    two times s.  Doubling N multiplies a product's work (2 N**3 FLOPs) by 8, so the sizes tried
    before the last cost at most 1/7 of its time together.

    :raises ValueError: ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError('matrix size must be a positive integer, got %r' % (n,))
    return 2 * n


def should_grow(n, seconds, min_seconds, max_bytes):
    """Whether the probe tries the next size after one timed product at size N took ``seconds``.

    Rule: grow while one product lasts less than ``min_seconds`` (the floor, in seconds) and the
    next size's matrices fit in ``max_bytes`` (:func:`matmul_bytes` of :func:`next_matrix_size`).
    A product shorter than the floor times the dispatch and the synchronisation more than the
    device: an M3 Ultra finishes a 1024 x 1024 float32 product in a fraction of a millisecond.

    :returns: ``(grow, stopped_by)``: ``(True, None)`` to try ``next_matrix_size(n)``, else
        ``(False, reason)`` with reason :data:`SIZE_FIXED` (``min_seconds`` <= 0: no floor),
        :data:`SIZE_FLOOR` (``seconds >= min_seconds``) or :data:`SIZE_CAP` (the next size would
        need more than ``max_bytes``, or is 2**23 or more, where gamma_n reaches 1 and bounds nothing).
    """
    if not min_seconds or min_seconds <= 0:
        return False, SIZE_FIXED
    if seconds >= min_seconds:
        return False, SIZE_FLOOR
    bigger = next_matrix_size(n)
    if max_bytes is not None and matmul_bytes(bigger) > max_bytes:
        return False, SIZE_CAP
    if bigger * FLOAT32_UNIT_ROUNDOFF >= 0.5:  # gamma_n grows useless long before 2**23
        return False, SIZE_CAP
    return True, None


def choose_matrix_size(start, min_seconds, max_bytes, time_product):
    """Grow the matrix from ``start`` by :func:`next_matrix_size` while :func:`should_grow` says so.

    ``time_product(n)`` prepares N x N matrices (and warms up) and returns the wall time, in
    seconds, of one timed product; the caller keeps the matrices of the last size it was called
    with.  With ``min_seconds`` <= 0 it is never called.

    :returns: dict ``matrix_size`` (the size reached), ``stopped_by`` (see :func:`should_grow`),
        ``trials`` (``[{'matrix_size': n, 'seconds': s}, ...]``, one per size timed, in order).
    """
    if not min_seconds or min_seconds <= 0:
        return {'matrix_size': start, 'stopped_by': SIZE_FIXED, 'trials': []}
    n = start
    trials = []
    while True:
        seconds = time_product(n)
        trials.append({'matrix_size': n, 'seconds': seconds})
        grow, stopped_by = should_grow(n, seconds, min_seconds, max_bytes)
        if not grow:
            return {'matrix_size': n, 'stopped_by': stopped_by, 'trials': trials}
        n = next_matrix_size(n)


# ---------------------------------------------------------------------------
# Node resources
# ---------------------------------------------------------------------------

#: Ray's own resource names, which a custom GPU resource must not take.
RAY_BUILTIN_RESOURCES = ('CPU', 'GPU', 'memory', 'object_store_memory')


def format_resources(resources):
    """A node's resources as short text: ``CPU 2, metal_gpu 1, memory 7.5 GiB, object_store_memory 256 MiB``.

    Sorted by name, Ray's per-node markers (``node:<ip>``, ``node:__internal_head__``) left out;
    ``memory`` and ``object_store_memory`` (bytes in ``ray.nodes()``) in MiB or GiB.
    """
    parts = []
    for name in sorted(resources or {}):
        if name.startswith('node:'):
            continue
        value = resources[name]
        if name in ('memory', 'object_store_memory') and isinstance(value, (int, float)):
            if value >= 2 ** 30:
                text = '%.1f GiB' % (value / 2.0 ** 30)
            else:
                text = '%d MiB' % round(value / 2.0 ** 20)
        elif isinstance(value, float) and value.is_integer():
            text = '%d' % value
        else:
            text = '%s' % (value,)
        parts.append('%s %s' % (name, text))
    return ', '.join(parts) if parts else 'none'


def check_node_resource(node, name, amount=1):
    """Why ``node`` (a ``ray.nodes()`` entry) cannot run a task that asks for ``amount`` of resource
    ``name``, or None when it offers at least that much in total.

    A task pinned with ``soft=False`` to a node without the resource fails at once with
    ``TaskUnschedulableError`` ("... doesn't exist any more or is infeasible"), naming neither the
    resource nor the fix; this says both, before anything is submitted.
    """
    total = (node.get('Resources') or {}).get(name)
    if total is not None and total >= amount:
        return None
    have = 'offers no %r resource' % (name,) if total is None else 'offers only %g of %r' % (total, name)
    return ('Ray node %s (%s, %s) %s, wanted %g for the MLX task; its resources: %s. Start the node with '
            "--resources='{\"%s\": %g}'"
            % (node.get('NodeID'), node.get('NodeManagerAddress'), node.get('NodeManagerHostname'), have, amount,
               format_resources(node.get('Resources')), name, amount))


def _finite(value):
    """Return ``value`` if it is a finite float, else None (keeps results strict JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return value


def metal_working_set(mx):
    """MLX's recommended working-set size of the Metal device, in bytes, or None without Metal.

    ``mx`` is ``mlx.core``.  The figure is ``max_recommended_working_set_size`` of
    ``mx.metal.device_info()`` (Metal's ``recommendedMaxWorkingSetSize``): about 75% of the
    unified memory by default on Apple silicon, more once ``sysctl iogpu.wired_limit_mb`` is
    raised (roles/gpu_memory).  MLX's CPU backend (Linux, the lab) has no Metal device: None.
    """
    metal = getattr(mx, 'metal', None)
    if metal is None or not metal.is_available():
        return None
    value = metal.device_info().get('max_recommended_working_set_size')
    return int(value) if value is not None else None


#: Verdicts of :func:`working_set_check`.
WORKING_SET_PASSED, WORKING_SET_FAILED, WORKING_SET_SKIPPED = 'passed', 'failed', 'skipped'


def working_set_check(working_set_bytes, min_bytes):
    """Compare a node's recommended working set with the wanted minimum.

    :param working_set_bytes: :func:`metal_working_set` on the node (bytes), or None.
    :param min_bytes: the wanted minimum in bytes; 0 or less asks for no check.
    :returns: ``(verdict, reason)``: ``skipped`` with why when there is nothing to compare (no
        minimum set, no Metal device), else ``passed`` or ``failed`` with both figures in GiB.
    """
    gib = float(1 << 30)
    if not min_bytes or min_bytes <= 0:
        return WORKING_SET_SKIPPED, 'no minimum set (saf_verify_min_working_set_gib is 0)'
    if working_set_bytes is None:
        return WORKING_SET_SKIPPED, 'MLX reports no Metal device here (its CPU backend), so no working set'
    verdict = WORKING_SET_PASSED if working_set_bytes >= min_bytes else WORKING_SET_FAILED
    return verdict, ('MLX recommends a working set of %.1f GiB, wanted at least %.1f GiB%s'
                     % (working_set_bytes / gib, min_bytes / gib,
                        '' if verdict == WORKING_SET_PASSED else
                        ': raise the GPU wired-memory limit (gpu_memory_wired_limit_mb, roles/gpu_memory)'))


def mlx_matmul_task(n, iterations, sample, seed, min_seconds=0.0, max_bytes=None):
    """Ray task payload: time an N x N float32 MLX matmul on this node and check it.

    Runs INSIDE the Ray worker process on the target node (imports MLX and Ray
    there).  The calling driver must make this function pickle *by value*
    (:meth:`RayCluster.run_pinned_many` registers this module with
    ``ray.cloudpickle.register_pickle_by_value``), because the worker cannot
    import ``ansible.module_utils.saf_ray`` (it lives in the AnsiballZ zip on
    the head node only).  Its arguments are six numbers, its result a small dict.

    Size: N starts at ``n``.  With ``min_seconds`` > 0 the size grows
    (:func:`choose_matrix_size`: N, 2N, 4N, ...) while one timed product lasts
    less than ``min_seconds`` seconds and the next size's A, B and C fit in
    ``max_bytes`` bytes (:func:`matmul_bytes`); each size tried gets fresh
    matrices, one untimed warm-up and one timed product.  ``min_seconds`` <= 0
    keeps N = ``n`` (no trial product).

    Work at the size reached: A and B are N x N float32 (``mx.random.normal``,
    keys split from ``mx.random.key(seed)``); one untimed warm-up
    ``mx.eval(a @ b)``; then ``iterations`` timed runs of ``c = a @ b; mx.eval(c)``
    (``time.perf_counter`` around both: MLX is lazy, so ``mx.eval`` must be
    inside the timed region).  ``sample`` entries of the last C are checked
    against a float64 reference (:func:`check_entry`, bound :func:`matmul_error_bound`).

    :returns: plain JSON-serialisable dict: ``hostname`` (raw
        ``socket.gethostname()``), ``node_id`` (hex, :func:`node_id_hex`), ``device``
        (``str(mx.default_device())``), ``device_kind`` ('gpu'/'cpu'), ``versions``
        {python, ray, mlx}, ``matrix_size`` (the N used), ``sizing`` {``start``,
        ``min_seconds``, ``max_bytes``, ``matrix_bytes``, ``stopped_by``, ``trials``},
        ``iterations``, ``seconds`` (list, seconds per product), ``median_seconds``,
        ``gflops`` (from the median, GFLOPS), ``checked`` (entries checked),
        ``max_abs_error``, ``error_bound`` (the bound of the entry with the largest
        error/bound ratio), ``gamma_n``, ``max_error_ratio`` (largest abs error /
        bound; the check passes iff <= 1), ``failed_entries`` (count),
        ``bad_entries`` (up to 5 failing entries), ``product_ok`` (bool: at least
        one entry checked and none failed), ``working_set_bytes`` (:func:`metal_working_set`,
        bytes, None without Metal).
    """
    import platform
    import socket as _socket
    import time as _time

    import mlx.core as mx
    import ray

    start_n = int(n)
    iterations = int(iterations)
    sample = int(sample)
    min_seconds = float(min_seconds or 0.0)
    max_bytes = None if max_bytes is None else int(max_bytes)

    mlx_version = getattr(mx, '__version__', None)
    if not mlx_version:
        try:
            from importlib import metadata as _metadata
            mlx_version = _metadata.version('mlx')
        except Exception:  # pragma: no cover - depends on the install
            mlx_version = None

    device = mx.default_device()
    device_kind = str(device.type).rsplit('.', 1)[-1].lower()
    key_a, key_b = mx.random.split(mx.random.key(seed))
    held = {}

    def prepare(size):
        held.clear()  # the previous size's matrices go before the next size's are made
        clear_cache = getattr(mx, 'clear_cache', None)  # MLX keeps freed buffers for reuse
        if callable(clear_cache):
            clear_cache()
        a = mx.random.normal((size, size), dtype=mx.float32, key=key_a)
        b = mx.random.normal((size, size), dtype=mx.float32, key=key_b)
        mx.eval(a, b)
        mx.eval(a @ b)  # warm-up: kernel selection / compilation, untimed
        held.update(a=a, b=b)

    def time_once():
        start = _time.perf_counter()
        product = held['a'] @ held['b']
        mx.eval(product)
        return _time.perf_counter() - start, product

    def trial(size):
        prepare(size)
        return time_once()[0]

    sizing = choose_matrix_size(start_n, min_seconds, max_bytes, trial)
    n = sizing['matrix_size']
    if sizing['stopped_by'] == SIZE_FIXED:
        prepare(n)
    a, b = held['a'], held['b']

    seconds = []
    c = None
    for _ in range(iterations):
        c = None  # A, B and one C at a time: matmul_bytes(n)
        elapsed, c = time_once()
        seconds.append(elapsed)

    gamma = matmul_error_bound(n)
    max_error = 0.0
    worst_ratio = 0.0
    worst_bound = None
    failures = 0
    bad = []
    checked = 0
    for i, j in sample_indices(n, sample, seed):
        row = a[i].tolist()
        col = b[:, j].tolist()
        value = c[i, j].item()
        ok, error, bound, reference = check_entry(row, col, value, gamma)
        checked += 1
        if math.isnan(error):
            error = float('inf')
        if not ok:
            failures += 1
            if len(bad) < 5:
                bad.append({'i': i, 'j': j, 'value': _finite(value), 'reference': reference,
                            'abs_error': _finite(error), 'bound': bound})
        max_error = max(max_error, error)
        ratio = error / bound if bound > 0 else (0.0 if error == 0 else float('inf'))
        if worst_bound is None or ratio > worst_ratio:
            worst_ratio = ratio
            worst_bound = bound

    mid = median(seconds)
    try:
        node_id = node_id_hex(ray.get_runtime_context().get_node_id())
    except ValueError as exc:  # reported, and refused by the node ID check of check_probe_report
        node_id = str(exc)
    return {
        'hostname': _socket.gethostname(),
        'node_id': node_id,
        'device': str(device),
        'device_kind': device_kind,
        'versions': {
            'python': platform.python_version(),
            'ray': ray.__version__,
            'mlx': mlx_version,
        },
        'matrix_size': n,
        'sizing': {
            'start': start_n,
            'min_seconds': min_seconds,
            'max_bytes': max_bytes,
            'matrix_bytes': matmul_bytes(n),
            'stopped_by': sizing['stopped_by'],
            'trials': sizing['trials'],
        },
        'iterations': iterations,
        'seconds': seconds,
        'median_seconds': mid,
        'gflops': gflops(n, mid) if mid > 0 else None,
        'checked': checked,
        'max_abs_error': _finite(max_error),
        'error_bound': worst_bound,
        'gamma_n': gamma,
        'max_error_ratio': _finite(worst_ratio),
        'failed_entries': failures,
        'bad_entries': bad,
        'product_ok': checked > 0 and failures == 0,
        'working_set_bytes': metal_working_set(mx),
    }


def check_probe_report(report, target_node_id, expected_hostname, require_gpu):
    """Return the list of reasons (strings) why a :func:`mlx_matmul_task` report fails; empty = pass.

    Checks, in order: (1) the node ID seen inside the task equals
    ``target_node_id``; (2) ``normalise_hostname(report['hostname']) ==
    normalise_hostname(expected_hostname)`` (the raw names are quoted);
    (3) ``report['product_ok']``; (4) ``device_kind == 'gpu'`` when
    ``require_gpu``.
    """
    problems = []
    seen_id = report.get('node_id')
    try:
        seen_id = node_id_hex(seen_id)
    except ValueError:
        pass
    if seen_id != target_node_id:
        problems.append('the task ran on Ray node ID %s, wanted the target node ID %s'
                        % (seen_id, target_node_id))
    raw = report.get('hostname')
    try:
        seen_host = normalise_hostname(raw)
    except ValueError:
        seen_host = None
    wanted_host = normalise_hostname(expected_hostname)
    if seen_host != wanted_host:
        problems.append("the task reported hostname '%s' (normalised '%s'), wanted '%s' (normalised '%s')"
                        % (raw, seen_host, expected_hostname, wanted_host))
    if not report.get('product_ok'):
        problems.append('the %dx%d float32 product failed its check: max abs error %s exceeds the bound '
                        '(gamma_n = %s, Higham eq. (3.5)) on %d of %d sampled entries: %s'
                        % (report.get('matrix_size') or 0, report.get('matrix_size') or 0,
                           report.get('max_abs_error'), report.get('gamma_n'),
                           report.get('failed_entries') or 0, report.get('checked') or 0,
                           report.get('bad_entries')))
    if require_gpu and report.get('device_kind') != 'gpu':
        problems.append('MLX default device is %s (kind %s), wanted the GPU (require_gpu=true)'
                        % (report.get('device'), report.get('device_kind')))
    return problems


# ---------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------

def parse_gcs_address(address):
    """Split a GCS address ``'host:port'`` (or ``'[v6]:port'``) into ``(host, port)``.

    :raises ValueError: no port, a port outside 1..65535, or a ``ray://`` /
        ``auto`` address (SAF always names the GCS explicitly).
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError('GCS address must be "host:port", got %r' % (address,))
    text = address.strip()
    if text == 'auto' or '://' in text:
        raise ValueError('GCS address must be "host:port" (no "auto", no scheme), got %r' % (address,))
    if text.startswith('['):
        host, sep, port = text[1:].partition(']:')
    else:
        host, sep, port = text.rpartition(':')
    if not sep or not host or ':' in host and not text.startswith('['):
        raise ValueError('GCS address must be "host:port", got %r' % (address,))
    try:
        number = int(port)
    except ValueError:
        raise ValueError('GCS address %r has port %r, wanted an integer 1..65535' % (address, port))
    if not 1 <= number <= 65535:
        raise ValueError('GCS address %r has port %d, wanted 1..65535' % (address, number))
    return host, number


def check_local_address(ip):
    """Raise :class:`ConnectError` unless ``ip`` is an address of one of this host's interfaces.

    Ray 2.49.2 connects the driver to the raylet at ``driver_node_ip``; if that
    IP is not local, ``ray.init`` does not raise -- the core worker logs
    "Failed to get the system config from raylet because it is dead" and the
    process exits about 9 s later.  Binding a UDP socket to ``(ip, 0)`` fails
    with EADDRNOTAVAIL for a non-local address, so check that first.
    """
    try:
        family = socket.AF_INET6 if ':' in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except (OSError, TypeError) as exc:
        raise ConnectError('driver_node_ip %r is not usable: %s' % (ip, exc))
    try:
        sock.bind((ip, 0))
    except (OSError, TypeError, ValueError) as exc:
        raise ConnectError('driver_node_ip %s is not an address of this host (%s); wanted the IP the '
                           'head node was started with (ray start --node-ip-address)' % (ip, exc))
    finally:
        sock.close()


def wait_for_tcp(host, port, timeout, poll=0.5):
    """Wait until a TCP connection to ``host:port`` succeeds, for at most ``timeout`` seconds.

    Used before ``ray.init`` because Ray's own GCS client retries for minutes
    (observed > 200 s with Ray 2.49.2 against a closed port) before giving up.

    :returns: seconds waited (float).
    :raises ConnectError: still refused/unreachable after ``timeout`` seconds.
    """
    start = time.monotonic()
    deadline = start + max(float(timeout), 0.0)
    last = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            conn = socket.create_connection((host, port), timeout=max(min(remaining, 5.0), 0.1))
        except (OSError, socket.timeout) as exc:
            last = exc
        else:
            conn.close()
            return time.monotonic() - start
        if time.monotonic() + poll > deadline:
            raise ConnectError('Ray GCS at %s:%d is not reachable over TCP after %.1f s: %s'
                               % (host, port, time.monotonic() - start, last))
        time.sleep(poll)


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (Python and file descriptor 1) to stderr, inside the block.

    An Ansible module's stdout must carry only its JSON result, but a Ray
    driver prints cluster error messages to ``sys.stdout`` from a background
    thread whatever ``log_to_driver`` says (``listen_error_messages`` in
    ``ray/_private/worker.py``, e.g. "(raylet) The node with node id ... has been
    marked dead").  Wrap every Ray call, including ``ray.shutdown()``, in this.
    """
    saved_stdout = sys.stdout
    try:
        saved_stdout.flush()
    except Exception:
        pass
    try:
        saved_fd = os.dup(1)
    except OSError:
        saved_fd = None
    try:
        if saved_fd is not None:
            os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        sys.stdout = saved_stdout
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def import_ray():
    """Import and return the ``ray`` package, with multi-node clusters enabled on macOS.

    Sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` *before* the import: Ray reads
    it into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` at import time, so
    setting it after ``import ray`` has no effect.  Harmless on Linux.

    :raises ImportError: Ray is not installed in this interpreter.
    """
    os.environ[RAY_CLUSTER_ENV] = '1'
    import ray  # noqa: F401 - imported lazily on purpose
    return ray


class RayCluster(object):
    """A driver connection to a running Ray cluster (made by :func:`connect`).

    Thin wrapper so the modules need only: :meth:`nodes`, :meth:`run_pinned_many`,
    :meth:`available_resources`, :meth:`shutdown`, and ``job_id``.  Unit tests substitute a
    test double with the same methods.
    """

    def __init__(self, ray, gcs_address, driver_node_ip, connect_seconds):
        self.ray = ray
        self.gcs_address = gcs_address
        self.driver_node_ip = driver_node_ip
        self.connect_seconds = connect_seconds
        self.connect_attempts = 1
        self.job_id = None

    def nodes(self):
        """Return ``ray.nodes()`` (Alive and dead entries, see the module docstring), node IDs as
        hex strings (:func:`normalise_nodes`)."""
        return normalise_nodes(self.ray.nodes())

    def read_job_id(self):
        """This driver's Ray job ID (hex, e.g. ``'0d000000'``), or None; best effort.

        Ray writes ``:job_id:<job ID>`` and ``:task_name:<function>`` at the top of a worker's
        ``worker-*.out`` and ``.err`` when it starts a task of the job, which is how the logs of a
        worker that died running the probe are found on its node (roles/cluster_verify).
        """
        try:
            job = self.ray.get_runtime_context().get_job_id()
        except Exception:
            return None
        try:
            return node_id_hex(job) if job is not None else None
        except ValueError:
            return str(job)

    def available_resources(self, node_id):
        """Best effort: the available logical resources of one node, or None.

        Uses ``ray._private.state.available_resources_per_node()`` (a private
        Ray API, present in 2.49.2); any failure returns None.
        """
        try:
            from ray._private import state
            return dict(state.available_resources_per_node().get(node_id) or {})
        except Exception:
            return None

    def run_pinned_many(self, func, calls, timeout=60.0, num_cpus=1, resources=None):
        """Run ``func(*args)`` once per ``(node_id, args)`` in ``calls``, each task pinned to its node,
        all at the same time, with one bounded wait; return one outcome per call, in order.

        Every task is submitted with ``NodeAffinitySchedulingStrategy(node_id, soft=False)``,
        ``num_cpus``, ``resources`` (custom resources, e.g. ``{'metal_gpu': 1}``, when given),
        ``max_retries=0``, before any result is awaited; then one ``ray.wait`` of at
        most ``timeout`` seconds covers them all, so N workers take about the time of the slowest,
        not the sum.  The module defining ``func`` is registered with
        ``ray.cloudpickle.register_pickle_by_value`` so the function travels by value (the worker
        cannot import AnsiballZ's module_utils).

        An outcome is the task's return value, or (not raised) a :class:`TaskTimeout` when it had
        no result in time (it is force-cancelled), or a :class:`TaskFailed` when it was
        unschedulable (node gone, or without a resource asked for), raised inside the worker, or
        its worker died (``worker_died``, see :data:`WORKER_DEATH_ERRORS`).  An exception that is
        not Ray's becomes a :class:`TaskFailed` too, naming its type: one worker's odd result does
        not lose the others'.

        :raises ValueError: a ``node_id`` is malformed (checked before anything is submitted).
        """
        for node_id, _args in calls:
            validate_node_id(node_id)
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray.cloudpickle.register_pickle_by_value(sys.modules[func.__module__])
        refs = []
        options = dict(num_cpus=num_cpus, max_retries=0)
        if resources:
            options['resources'] = dict(resources)
        for node_id, args in calls:
            remote = ray.remote(func).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False), **options)
            refs.append(remote.remote(*args))
        ready, _pending = ray.wait(refs, num_returns=len(refs), timeout=max(float(timeout), 0.001))
        ready = set(ready)  # ObjectRefs hash and compare by object ID
        outcomes = []
        for (node_id, _args), ref in zip(calls, refs):
            if ref not in ready:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
                outcomes.append(TaskTimeout('the Ray task did not finish within %.1f s' % timeout))
                continue
            try:
                outcomes.append(ray.get(ref))
            except ray.exceptions.TaskUnschedulableError as exc:
                outcomes.append(TaskFailed('the Ray task is unschedulable on node %s: %s' % (node_id, exc),
                                           error_type=type(exc).__name__))
            except Exception as exc:  # RayError and its kin; anything else is named by its type too
                name = type(exc).__name__
                died = name in WORKER_DEATH_ERRORS
                outcomes.append(TaskFailed('%s: %s: %s' % ('its worker process died' if died else 'the Ray task failed',
                                                           name, exc), error_type=name, worker_died=died))
        return outcomes

    def shutdown(self):
        """Disconnect the driver (``ray.shutdown()``); never raises."""
        try:
            self.ray.shutdown()
        except Exception:
            pass


def connect(gcs_address, driver_node_ip, timeout=30.0):
    """Connect this process to the Ray cluster as a driver; return a :class:`RayCluster`.

    Steps: validate ``gcs_address`` (``host:port``); check that
    ``driver_node_ip`` is local (:func:`check_local_address`); wait up to
    ``timeout`` seconds for the GCS port to accept TCP (:func:`wait_for_tcp`);
    then ``ray.init(address=gcs_address, _node_ip_address=driver_node_ip,
    namespace='saf', log_to_driver=False, logging_level=logging.ERROR,
    configure_logging=True)``.  Never ``address='auto'`` (could pick another
    cluster on the machine) and never an auto-detected node IP (Ray picks the
    default-route interface).  ``log_to_driver=False`` also keeps worker output
    off the module's stdout, which must carry only the JSON result.  Ray's
    version check is left alone: a version mismatch surfaces as ConnectError.
    Measured on a Linux test host (Ray 2.49.2, GCS on the same machine):
    ``import ray`` 0.3 s, then ``ray.init`` 0.03-0.05 s; ``ray.shutdown`` 0.2-0.5 s.

    :raises ValueError: malformed ``gcs_address``.
    :raises ImportError: Ray is not installed.
    Right after ``ray start --head`` the GCS port is open before the head
    node's raylet is found by a driver: ``ray.init`` then waits inside Ray
    (observed 6-13 s) or raises a bare ``ConnectionError`` (observed after
    ~14 s); :func:`connect` retries that error every
    :data:`CONNECT_RETRY_SECONDS` until ``timeout``.  A single ``ray.init``
    call cannot be interrupted, so ``timeout`` can be overrun by one attempt.

    :raises ConnectError: the driver IP is not local, the GCS is unreachable
        within ``timeout`` seconds, or ``ray.init`` raised.
    """
    host, port = parse_gcs_address(gcs_address)
    start = time.monotonic()
    check_local_address(driver_node_ip)
    wait_for_tcp(host, port, timeout)
    ray = import_ray()
    attempts = 0
    while True:
        attempts += 1
        try:
            ray.init(
                address=gcs_address,
                _node_ip_address=driver_node_ip,
                namespace=RAY_NAMESPACE,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
            break
        except ConnectionError as exc:
            # Raised (bare) by ray.init when the local node's info is not in the GCS yet -- a head
            # node started seconds ago.  Nothing is connected at that point, so retrying is safe.
            try:
                ray.shutdown()
            except Exception:
                pass
            elapsed = time.monotonic() - start
            if elapsed + CONNECT_RETRY_SECONDS >= timeout:
                raise ConnectError('ray.init(address=%r, _node_ip_address=%r) failed %d time(s) in %.1f s with '
                                   'ConnectionError%s; is the raylet of the node %s registered with the GCS?'
                                   % (gcs_address, driver_node_ip, attempts, elapsed,
                                      ': %s' % exc if str(exc) else '', driver_node_ip))
            time.sleep(CONNECT_RETRY_SECONDS)
        except Exception as exc:
            raise ConnectError('ray.init(address=%r, _node_ip_address=%r) failed: %s: %s'
                               % (gcs_address, driver_node_ip, type(exc).__name__, exc))
    cluster = RayCluster(ray, gcs_address, driver_node_ip, time.monotonic() - start)
    cluster.connect_attempts = attempts
    cluster.job_id = cluster.read_job_id()
    return cluster


def wait_for_nodes(expected, timeout, poll=1.0, settle=5.0, nodes_fn=None, clock=None, sleep=None):
    """Poll ``ray.nodes()`` until every expected address is an Alive node that stays Alive.

    A node counts once it has been the only Alive node at its address, with
    the same node ID, on consecutive polls spanning at least ``settle``
    seconds (and at least two polls when ``settle`` > 0).  This catches a raylet that registers and dies
    seconds later (seen with Ray 2.49.2 when its dashboard agent dies): the
    GCS shows it Alive first.  A raylet that exits cleanly is marked dead at
    once; one that is killed stays Alive until the GCS health check gives up
    (about 11-15 s with the defaults, observed) -- so right after a hard
    restart of a worker node there are two Alive entries at its address.  A
    change of the node IDs at an address restarts its settle period.

    :param expected: node IPs (``NodeManagerAddress`` values).
    :param timeout: overall bound, seconds.
    :param poll: seconds between polls.
    :param settle: seconds a node must stay Alive.
    :param nodes_fn: callable returning ``ray.nodes()``-shaped data (default ``ray.nodes``).
    :param clock: callable returning seconds (default ``time.monotonic``).
    :param sleep: callable sleeping seconds (default ``time.sleep``).
    :returns: dict ``ok`` (bool), ``missing`` (expected addresses not yet
        settled, input order), ``dropped`` (addresses seen Alive that later
        were not, or whose node ID changed), ``nodes`` (last ``ray.nodes()``),
        ``elapsed`` (seconds), ``polls`` (count).
    """
    if nodes_fn is None:
        ray = import_ray()

        def nodes_fn():
            return normalise_nodes(ray.nodes())
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    expected = list(expected)
    start = clock()
    deadline = start + float(timeout)
    since = {}     # address -> (node ids, first time seen Alive with them, polls in a row)
    dropped = []
    polls = 0
    while True:
        now = clock()
        nodes = nodes_fn()
        polls += 1
        live = {}
        for node in alive_nodes(nodes):
            live.setdefault(node.get('NodeManagerAddress'), set()).add(node.get('NodeID'))
        settled = []
        for address in expected:
            ids = frozenset(live.get(address, ()))
            previous = since.get(address)
            if not ids:
                if previous is not None:
                    since.pop(address)
                    if address not in dropped:
                        dropped.append(address)
                continue
            if previous is None or previous[0] != ids:
                if previous is not None and address not in dropped:
                    dropped.append(address)
                since[address] = (ids, now, 1)
            else:
                since[address] = (ids, previous[1], previous[2] + 1)
            _ids, first, count = since[address]
            # Two Alive entries at one address: a worker node was restarted and the GCS has not yet
            # declared the old raylet dead (observed ~11 s after a SIGKILL). Wait for one to remain.
            if len(ids) == 1 and now - first >= settle and (settle <= 0 or count >= 2):
                settled.append(address)
        missing = [address for address in expected if address not in settled]
        if not missing or now >= deadline:
            return {'ok': not missing, 'missing': missing, 'dropped': dropped,
                    'nodes': nodes, 'elapsed': now - start, 'polls': polls}
        sleep(max(min(poll, deadline - now), 0.0))
