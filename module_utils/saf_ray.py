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
    """The pinned Ray task failed: unschedulable, raised inside the worker, or its worker died."""


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


def validate_node_id(node_id):
    """Return ``node_id`` if it is a well-formed, non-Nil Ray node ID.

    A Ray node ID is 28 bytes, written as 56 lowercase hex characters (as
    ``ray.nodes()`` and ``ray.get_runtime_context().get_node_id()`` give it).
    Ray 2.49.2 *aborts the whole driver process* (C++ check failure, no Python
    exception) when ``NodeAffinitySchedulingStrategy(node_id=..., soft=False)``
    gets a malformed ID or the Nil ID (``'f' * 56``), so validate before
    scheduling.  Upper-case hex is rejected although Ray would decode it: SAF
    compares IDs as strings, and Ray never produces upper case.

    :raises ValueError: naming the value seen and what is wanted.
    """
    if not isinstance(node_id, str):
        raise ValueError('Ray node ID must be a string of %d lowercase hex characters, got %r'
                         % (NODE_ID_HEX_LEN, node_id))
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
    return {
        'node_id': node.get('NodeID'),
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


def _finite(value):
    """Return ``value`` if it is a finite float, else None (keeps results strict JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return value


def mlx_matmul_task(n, iterations, sample, seed):
    """Ray task payload: time an N x N float32 MLX matmul on this node and check it.

    Runs INSIDE the Ray worker process on the target node (imports MLX and Ray
    there).  The calling driver must make this function pickle *by value*
    (:meth:`RayCluster.run_pinned_many` registers this module with
    ``ray.cloudpickle.register_pickle_by_value``), because the worker cannot
    import ``ansible.module_utils.saf_ray`` (it lives in the AnsiballZ zip on
    the head node only).

    Work: A and B are N x N float32 (``mx.random.normal``, keys split from
    ``mx.random.key(seed)``); one untimed warm-up ``mx.eval(a @ b)``; then
    ``iterations`` timed runs of ``c = a @ b; mx.eval(c)`` (``time.perf_counter``
    around both: MLX is lazy, so ``mx.eval`` must be inside the timed region).
    ``sample`` entries of the last C are checked against a float64 reference
    (:func:`check_entry`, bound :func:`matmul_error_bound`).

    :returns: plain JSON-serialisable dict: ``hostname`` (raw
        ``socket.gethostname()``), ``node_id``, ``device`` (``str(mx.default_device())``),
        ``device_kind`` ('gpu'/'cpu'), ``versions`` {python, ray, mlx},
        ``matrix_size``, ``iterations``, ``seconds`` (list, seconds per product),
        ``median_seconds``, ``gflops`` (from the median, GFLOPS),
        ``checked`` (entries checked), ``max_abs_error``, ``error_bound`` (the
        bound of the entry with the largest error/bound ratio), ``gamma_n``,
        ``max_error_ratio`` (largest abs error / bound; the check passes iff <= 1),
        ``failed_entries`` (count), ``bad_entries`` (up to 5 failing entries),
        ``product_ok`` (bool: at least one entry checked and none failed).
    """
    import platform
    import socket as _socket
    import time as _time

    import mlx.core as mx
    import ray

    n = int(n)
    iterations = int(iterations)
    sample = int(sample)

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
    a = mx.random.normal((n, n), dtype=mx.float32, key=key_a)
    b = mx.random.normal((n, n), dtype=mx.float32, key=key_b)
    mx.eval(a, b)
    mx.eval(a @ b)  # warm-up: kernel selection / compilation, untimed

    seconds = []
    c = None
    for _ in range(iterations):
        start = _time.perf_counter()
        c = a @ b
        mx.eval(c)
        seconds.append(_time.perf_counter() - start)

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
    return {
        'hostname': _socket.gethostname(),
        'node_id': ray.get_runtime_context().get_node_id(),
        'device': str(device),
        'device_kind': device_kind,
        'versions': {
            'python': platform.python_version(),
            'ray': ray.__version__,
            'mlx': mlx_version,
        },
        'matrix_size': n,
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
    :meth:`available_resources`, :meth:`shutdown`.  Unit tests substitute a
    test double with the same methods.
    """

    def __init__(self, ray, gcs_address, driver_node_ip, connect_seconds):
        self.ray = ray
        self.gcs_address = gcs_address
        self.driver_node_ip = driver_node_ip
        self.connect_seconds = connect_seconds
        self.connect_attempts = 1

    def nodes(self):
        """Return ``ray.nodes()`` (Alive and dead entries, see the module docstring)."""
        return self.ray.nodes()

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

    def run_pinned_many(self, func, calls, timeout=60.0, num_cpus=1):
        """Run ``func(*args)`` once per ``(node_id, args)`` in ``calls``, each task pinned to its node,
        all at the same time, with one bounded wait; return one outcome per call, in order.

        Every task is submitted with ``NodeAffinitySchedulingStrategy(node_id, soft=False)``,
        ``num_cpus``, ``max_retries=0``, before any result is awaited; then one ``ray.wait`` of at
        most ``timeout`` seconds covers them all, so N workers take about the time of the slowest,
        not the sum.  The module defining ``func`` is registered with
        ``ray.cloudpickle.register_pickle_by_value`` so the function travels by value (the worker
        cannot import AnsiballZ's module_utils).

        An outcome is the task's return value, or (not raised) a :class:`TaskTimeout` when it had
        no result in time (it is force-cancelled), or a :class:`TaskFailed` when it was
        unschedulable (node gone), raised inside the worker, or its worker died.

        :raises ValueError: a ``node_id`` is malformed (checked before anything is submitted).
        """
        for node_id, _args in calls:
            validate_node_id(node_id)
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray.cloudpickle.register_pickle_by_value(sys.modules[func.__module__])
        refs = []
        for node_id, args in calls:
            remote = ray.remote(func).options(
                num_cpus=num_cpus,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            )
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
                outcomes.append(TaskFailed('the Ray task is unschedulable on node %s: %s' % (node_id, exc)))
            except ray.exceptions.RayError as exc:
                outcomes.append(TaskFailed('the Ray task failed: %s' % (exc,)))
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
        nodes_fn = import_ray().nodes
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
