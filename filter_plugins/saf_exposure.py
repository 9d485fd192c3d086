"""Jinja2 filters behind verify.yml's port exposure check (roles/ray_port_exposure): who probes Ray's
ports from outside the cluster, what each node's probes found, and the tables that show it.

The check never passes on nothing: a node that no prober tried, or that had no Ray socket to try,
is "not probed", with the reason, never "closed".
"""

from __future__ import annotations

import ipaddress
import json

from ansible.errors import AnsibleFilterError

#: The name the controller goes by among the probers (in tables, messages and the reports).
CONTROLLER = "controller"


def _is_loopback(address):
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def exposure_probers(probe_hosts, controller_view=None, nodes=None, enabled=True):
    """Who tries Ray's ports from outside the cluster.

    ``probe_hosts``: the hosts of the inventory group saf_probes. ``controller_view``: the output of
    roles/ray_port_exposure/files/local_addresses.py run on the controller for the addresses of
    ``nodes`` (``{host: saf_node_ip}``, every cluster node), or None when it did not run. ``enabled``:
    ray_port_exposure_from_controller.

    The controller probes unless it is disabled or it is a cluster node: it holds a node's address,
    or reaches the nodes from one (the firewall admits those, so its probe would prove nothing). It
    probes only the nodes it has a route to.

    Returns ``{'probers': [{'name', 'host', 'controller', 'addresses'}], 'controller': {'probes',
    'reason', 'source'}, 'reason'}``: ``addresses`` None means every node; ``controller.reason`` says
    why the controller does not probe (None when it does), ``controller.source`` the addresses it
    probes from; ``reason`` is None unless nobody probes at all, and then says why.
    """
    nodes = dict(nodes or {})
    by_address = {str(address): host for host, address in nodes.items()}
    probers = [{"name": str(host), "host": str(host), "controller": False, "addresses": None}
               for host in (probe_hosts or [])]
    controller = {"probes": False, "reason": None, "source": []}
    if not enabled:
        controller["reason"] = "ray_port_exposure_from_controller is false"
    elif not isinstance(controller_view, dict):
        controller["reason"] = "its own addresses were not read"
    else:
        own = [a for a in controller_view.get("own") or [] if a in by_address]
        sources = controller_view.get("source") or {}
        inside = sorted({s for s in sources.values() if s in by_address})
        routed = sorted(a for a in by_address if sources.get(a))
        if own:
            controller["reason"] = "it is a cluster node (it holds %s)" % ", ".join(
                "%s's address %s" % (by_address[a], a) for a in sorted(own))
        elif inside:
            controller["reason"] = "it reaches the cluster from %s, which the firewall admits" % ", ".join(
                "%s's address %s" % (by_address[a], a) for a in inside)
        elif not routed:
            controller["reason"] = "it has no route to any cluster node"
        else:
            controller.update(probes=True, source=sorted({sources[a] for a in routed}))
            probers.append({"name": CONTROLLER, "host": "localhost", "controller": True,
                            "addresses": None if len(routed) == len(by_address) else routed})
    reason = None
    if not probers:
        reason = "no probe host (inventory group saf_probes), and the controller does not probe: %s" % controller["reason"]
    return {"probers": probers, "controller": controller, "reason": reason}


def exposure_targets(sockets, address):
    """``address:port`` for every port of ``sockets`` (ray_sockets.py's list) that a socket not bound
    to loopback listens on, sorted by port: what a host outside the cluster could reach."""
    ports = sorted({int(s["port"]) for s in sockets or [] if not _is_loopback(s.get("address"))})
    return ["%s:%d" % (address, port) for port in ports]


def exposure_result(probes, sockets, address, probers):
    """What the probes of one node found.

    ``probes``: the registered result of the probe task's loop over ``probers['probers']`` (each
    item's ``stdout`` is tcp_probe.py's JSON; skipped items did not run). ``sockets``: the node's Ray
    sockets (ray_sockets.py); ``address``: its saf_node_ip; ``probers``: :func:`exposure_probers`.

    Returns ``{'address', 'targets', 'probed_by', 'reached', 'not_probed', 'verdict'}``: ``reached``
    lists ``{'prober', 'open'}`` for every prober that found a port open; ``not_probed`` is None, or
    why no prober tried this node; ``verdict`` is ``open``, ``closed`` or ``not probed``. No socket,
    no socket off loopback, or no prober: not probed, never closed.
    """
    targets = exposure_targets(sockets, address)
    probed_by, reached = [], []
    for item in (probes or {}).get("results") or []:
        if item.get("skipped") or "stdout" not in item:
            continue
        prober = item.get("item") or {}
        name = prober.get("name") if isinstance(prober, dict) else str(prober)
        try:
            found = json.loads(item["stdout"])
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError("exposure_result: %s printed no JSON (%s): %r" % (name, exc, item["stdout"][:200]))
        probed_by.append(name)
        opened = [t for t in found.get("open") or [] if t in targets]
        if opened:
            reached.append({"prober": name, "open": opened})
    not_probed = None
    if not sockets:
        not_probed = "no listening Ray socket of this cluster found on this node"
    elif not targets:
        not_probed = "every Ray socket of this node listens on loopback only: nothing to try from outside"
    elif not probed_by:
        plan = probers or {}
        if plan.get("reason"):
            not_probed = plan["reason"]
        else:
            missed = [p["name"] for p in plan.get("probers") or []
                      if p.get("addresses") is not None and address not in p["addresses"]]
            not_probed = ("no prober has a route to %s (%s)" % (address, ", ".join(missed)) if missed
                          else "no prober returned a result")
    verdict = "not probed" if not_probed else ("open" if reached else "closed")
    return {"address": address, "targets": targets, "probed_by": probed_by if not not_probed else [],
            "reached": reached, "not_probed": not_probed, "verdict": verdict}


def exposure_table(sockets_by_host, results_by_host):
    """One row per listening Ray socket: ``node``, ``port``, ``address``, ``process`` and
    ``from_outside``: the probers it answered, ``closed`` (probed, answered none), ``not probed``, or
    ``-`` (bound to loopback: out of reach)."""
    rows = []
    for host, sockets in (sockets_by_host or {}).items():
        result = (results_by_host or {}).get(host) or {}
        for s in sockets or []:
            target = "%s:%s" % (result.get("address"), s.get("port"))
            answered = [r["prober"] for r in result.get("reached") or [] if target in r["open"]]
            if _is_loopback(s.get("address")):
                seen = "-"
            elif answered:
                seen = ", ".join(answered)
            elif result.get("not_probed") or not result:
                seen = "not probed"
            else:
                seen = "closed"
            rows.append({"node": host, "port": s.get("port"), "address": s.get("address"),
                         "process": s.get("process"), "from_outside": seen})
    return rows


def exposure_summary(results_by_host):
    """One row per node: ``node``, ``address``, ``ports`` (how many were tried), ``probed_by`` and
    ``verdict`` (``closed``, ``OPEN to <probers>`` or ``not probed``; :func:`exposure_notes` says why)."""
    rows = []
    for host, result in (results_by_host or {}).items():
        result = result or {}
        if result.get("not_probed") or not result:
            verdict = "not probed"
        elif result.get("reached"):
            verdict = "OPEN to %s" % ", ".join(r["prober"] for r in result["reached"])
        else:
            verdict = "closed"
        rows.append({"node": host, "address": result.get("address"), "ports": len(result.get("targets") or []),
                     "probed_by": ", ".join(result.get("probed_by") or []) or "-", "verdict": verdict})
    return rows


def exposure_notes(probers, results_by_host):
    """The sentences under the summary table: whether the controller probed (from where, or why not),
    then, for the nodes that were not probed, why, one line per reason."""
    controller = (probers or {}).get("controller") or {}
    if controller.get("probes"):
        notes = ["The controller probed too, from %s." % ", ".join(controller.get("source") or [])]
    else:
        notes = ["The controller did not probe: %s." % (controller.get("reason") or "unknown")]
    by_reason = {}
    for host, result in (results_by_host or {}).items():
        reason = (result or {}).get("not_probed") or (None if result else "the check did not run")
        if reason:
            by_reason.setdefault(reason, []).append(host)
    for reason, hosts in by_reason.items():
        notes.append("Not probed, so not shown closed (skipped in reports/verify.xml): %s: %s."
                     % (", ".join(hosts), reason))
    return notes


class FilterModule:
    """Port exposure filters."""

    def filters(self):
        return {"exposure_probers": exposure_probers, "exposure_targets": exposure_targets,
                "exposure_result": exposure_result, "exposure_table": exposure_table,
                "exposure_summary": exposure_summary, "exposure_notes": exposure_notes}
