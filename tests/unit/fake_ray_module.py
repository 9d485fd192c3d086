# -*- coding: utf-8 -*-
"""Test doubles for the ``ray`` and ``mlx.core`` packages (neither is installed on the controller).

:func:`install_fake_ray` puts a scripted ``ray`` package in ``sys.modules``
(``ray``, ``ray.util``, ``ray.util.scheduling_strategies``, ``ray.exceptions``,
``ray.cloudpickle``) that records what ``saf_ray.RayCluster.run_pinned_many`` asks
of it and runs the task function in-process.  :func:`install_fake_mlx` puts a
tiny pure-Python ``mlx.core`` in ``sys.modules`` so ``saf_ray.mlx_matmul_task``
can run on the controller: float32 values are emulated by rounding through
``struct`` ('f').
"""

from __future__ import annotations

import random
import struct
import types


# --------------------------------------------------------------------------- ray

class FakeRayState(object):
    """What the fake ray package was asked to do."""

    def __init__(self, node_id, time_out=False, raise_on_get=None):
        self.node_id = node_id
        self.job_id = '0d000000'
        self.time_out = time_out
        self.raise_on_get = raise_on_get
        self.registered_by_value = []
        self.options = []
        self.submitted = []
        self.cancelled = []
        self.get_timeouts = []
        self.wait_calls = []
        self.nodes = []


def install_fake_ray(monkeypatch, node_id, version='2.49.2', time_out=False, raise_on_get=None):
    """Install a fake ``ray`` package (TEST DOUBLE); return its :class:`FakeRayState`."""
    state = FakeRayState(node_id, time_out=time_out, raise_on_get=raise_on_get)

    ray = types.ModuleType('ray')
    ray.__version__ = version
    ray.__path__ = []  # a package, so "import ray.util..." works

    exceptions = types.ModuleType('ray.exceptions')

    class RayError(Exception):
        pass

    class GetTimeoutError(RayError, TimeoutError):
        pass

    class TaskUnschedulableError(RayError):
        pass

    class RayTaskError(RayError):
        pass

    class WorkerCrashedError(RayError):
        # Ray 2.49.2's text, whatever killed the worker (ray/exceptions.py): no signal, no exit code.
        def __str__(self):
            return ('The worker died unexpectedly while executing this task. '
                    'Check python-core-worker-*.log files for more information.')

    exceptions.RayError = RayError
    exceptions.GetTimeoutError = GetTimeoutError
    exceptions.TaskUnschedulableError = TaskUnschedulableError
    exceptions.RayTaskError = RayTaskError
    exceptions.WorkerCrashedError = WorkerCrashedError

    cloudpickle = types.ModuleType('ray.cloudpickle')
    cloudpickle.register_pickle_by_value = state.registered_by_value.append

    util = types.ModuleType('ray.util')
    util.__path__ = []
    strategies = types.ModuleType('ray.util.scheduling_strategies')

    class NodeAffinitySchedulingStrategy(object):
        def __init__(self, node_id, soft, _spill_on_unavailable=False, _fail_on_unavailable=False):
            self.node_id = node_id
            self.soft = soft

    strategies.NodeAffinitySchedulingStrategy = NodeAffinitySchedulingStrategy
    util.scheduling_strategies = strategies

    class ObjectRef(object):
        def __init__(self, func, args):
            self.func = func
            self.args = args

    class RemoteFunction(object):
        def __init__(self, func):
            self.func = func

        def options(self, **kwargs):
            state.options.append(kwargs)
            return self

        def remote(self, *args):
            state.submitted.append(args)
            return ObjectRef(self.func, args)

    def get(ref, timeout=None):
        state.get_timeouts.append(timeout)
        if state.time_out:
            raise GetTimeoutError('Get timed out: some object(s) not ready.')
        if state.raise_on_get is not None:
            raise state.raise_on_get(exceptions)
        return ref.func(*ref.args)

    def wait(refs, num_returns=1, timeout=None):
        state.wait_calls.append({'refs': list(refs), 'num_returns': num_returns, 'timeout': timeout})
        if state.time_out:
            return [], list(refs)
        return list(refs), []

    class RuntimeContext(object):
        def get_node_id(self):
            return state.node_id

        def get_job_id(self):
            return state.job_id

    ray.remote = RemoteFunction
    ray.get = get
    ray.wait = wait
    ray.cancel = lambda ref, force=False: state.cancelled.append((ref, force))
    ray.get_runtime_context = RuntimeContext
    ray.nodes = lambda: list(state.nodes)
    ray.shutdown = lambda: None
    ray.exceptions = exceptions
    ray.cloudpickle = cloudpickle
    ray.util = util

    for name, module in (('ray', ray), ('ray.exceptions', exceptions), ('ray.cloudpickle', cloudpickle),
                         ('ray.util', util), ('ray.util.scheduling_strategies', strategies)):
        monkeypatch.setitem(__import__('sys').modules, name, module)
    return state


# --------------------------------------------------------------------------- mlx

def f32(value):
    """Round a Python float to the nearest float32 value."""
    return struct.unpack('f', struct.pack('f', value))[0]


class FakeArray(object):
    """Just enough of ``mlx.core.array`` for ``mlx_matmul_task``: @, [i], [:, j], [i, j], tolist, item."""

    def __init__(self, data, corrupt=None):
        self.data = data
        self.corrupt = corrupt

    def __matmul__(self, other):
        n = len(self.data)
        cols = [[row[j] for row in other.data] for j in range(n)]
        out = [[f32(sum(x * y for x, y in zip(self.data[i], cols[j]))) for j in range(n)] for i in range(n)]
        if self.corrupt is not None:
            for (i, j) in self.corrupt:
                out[i][j] = f32(out[i][j] + 1.0)
        return FakeArray(out)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, second = key
            if isinstance(first, slice):
                return FakeArray([row[second] for row in self.data[first]])
            return FakeArray(self.data[first][second])
        return FakeArray(list(self.data[key]))

    def tolist(self):
        return list(self.data)

    def item(self):
        return self.data


class FakeDeviceType(object):
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return 'DeviceType.%s' % self.name


class FakeDevice(object):
    def __init__(self, kind):
        self.type = FakeDeviceType(kind)

    def __str__(self):
        return 'Device(%s, 0)' % self.type.name


def install_fake_mlx(monkeypatch, device='cpu', corrupt=None, version='0.29.1'):
    """Install a fake ``mlx.core`` (TEST DOUBLE); ``corrupt`` lists (i, j) entries of A @ B made wrong by +1."""
    import sys

    core = types.ModuleType('mlx.core')
    core.__version__ = version
    core.float32 = 'float32'
    core.evaluated = []

    random_mod = types.SimpleNamespace()
    random_mod.key = lambda seed: ('key', seed)
    random_mod.split = lambda key: [key + ('a',), key + ('b',)]

    def normal(shape, dtype=None, key=None):
        rng = random.Random(repr(key))
        rows, cols = shape
        made = [[f32(rng.gauss(0.0, 1.0)) for _ in range(cols)] for _ in range(rows)]
        return FakeArray(made, corrupt=corrupt if key and key[-1] == 'a' else None)

    random_mod.normal = normal
    core.random = random_mod
    core.eval = lambda *arrays: core.evaluated.append(len(arrays))
    core.default_device = lambda: FakeDevice(device)

    mlx = types.ModuleType('mlx')
    mlx.__path__ = []
    mlx.core = core
    monkeypatch.setitem(sys.modules, 'mlx', mlx)
    monkeypatch.setitem(sys.modules, 'mlx.core', core)
    return core
