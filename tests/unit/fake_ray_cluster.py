# -*- coding: utf-8 -*-
"""Test double for ``saf_ray.RayCluster``: a scripted Ray cluster with no Ray behind it.

:class:`FakeRayCluster` has the methods the modules use (``nodes``,
``run_pinned_many``, ``available_resources``, ``shutdown``, ``connect_seconds``, ``job_id``) and
records what was asked of it, so tests can assert e.g. that check mode
submitted nothing and that the driver always disconnected.
"""

from __future__ import annotations

import copy

from ansible.module_utils.saf_ray import SafRayError


def node_id(seed):
    """A well-formed 56-hex-character Ray node ID built from a short hex seed."""
    return (seed * 56)[:56]


class FakeNodeID(object):
    """Stands in for ``ray.NodeID`` (TEST DOUBLE): what another Ray release may hand over instead of the
    hex string (Ray 2.49.2's deprecated ``get_runtime_context().node_id`` returns one); it has ``.hex()``
    and is no JSON value."""

    def __init__(self, hex_id):
        self._hex = hex_id

    def hex(self):
        return self._hex

    def __repr__(self):
        return 'NodeID(%s)' % self._hex


def make_node(node_id, address, hostname, alive=True, cpu=1.0, head=False, extra=None):
    """One ``ray.nodes()`` entry shaped like Ray 2.49.2's (dead entries have no resources).

    ``extra``: custom resources the node was started with (``ray start --resources``), e.g.
    ``{'metal_gpu': 1.0}``, as ``ray.nodes()`` lists them (floats, beside ``CPU``)."""
    resources = {}
    if alive:
        resources = {'CPU': cpu, 'memory': 8.0e9, 'object_store_memory': 2.0e9,
                     'node:%s' % address: 1.0}
        if head:
            resources['node:__internal_head__'] = 1.0
        resources.update(extra or {})
    return {
        'NodeID': node_id,
        'Alive': alive,
        'alive': alive,
        'NodeManagerAddress': address,
        'NodeManagerHostname': hostname,
        'NodeManagerPort': 44383,
        'ObjectManagerPort': 35165,
        'NodeName': address,
        'DeathReason': 0 if alive else 2,
        'DeathReasonMessage': '' if alive else 'health check failed due to missing too many heartbeats',
        'Resources': resources,
        'Labels': {'ray.io/node-id': node_id},
    }


class FakeRayCluster(object):
    """Scripted stand-in for a connected ``saf_ray.RayCluster`` (TEST DOUBLE, no Ray).

    :param nodes: ``ray.nodes()`` output, or a list of such outputs returned
        one per call (the last one repeats).
    :param report: dict each task returns (the task result), or a
        callable ``report(node_id) -> dict``.
    :param error: exception instance a task fails with instead, or a callable
        ``error(node_id) -> exception or None``.
    :param available: what ``available_resources`` returns.
    """

    connect_seconds = 0.01
    job_id = '0d000000'

    def __init__(self, nodes, report=None, error=None, available=None):
        if nodes and isinstance(nodes[0], list):
            self._snapshots = list(nodes)
        else:
            self._snapshots = [nodes]
        self.report = report
        self.error = error
        self.available = available
        self.submitted = []
        self.nodes_calls = 0
        self.shutdown_calls = 0

    def nodes(self):
        index = min(self.nodes_calls, len(self._snapshots) - 1)
        self.nodes_calls += 1
        return copy.deepcopy(self._snapshots[index])

    def _run_one(self, func, node_id, args=(), timeout=60.0, num_cpus=1, resources=None):
        self.submitted.append({'func': func, 'node_id': node_id, 'args': tuple(args),
                               'timeout': timeout, 'num_cpus': num_cpus, 'resources': resources})
        error = self.error(node_id) if callable(self.error) else self.error
        if error is not None:
            raise error
        if callable(self.report):
            return self.report(node_id)
        return copy.deepcopy(self.report)

    def run_pinned_many(self, func, calls, timeout=60.0, num_cpus=1, resources=None):
        """Like the real one: one outcome per ``(node_id, args)``, a raised SafRayError returned."""
        self.many_calls = getattr(self, 'many_calls', 0) + 1
        outcomes = []
        for node_id, args in calls:
            try:
                outcomes.append(self._run_one(func, node_id, args, timeout=timeout, num_cpus=num_cpus,
                                              resources=resources))
            except SafRayError as exc:
                outcomes.append(exc)
        return outcomes

    def available_resources(self, node_id):
        return self.available

    def shutdown(self):
        self.shutdown_calls += 1
