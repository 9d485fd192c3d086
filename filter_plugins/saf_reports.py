"""Jinja2 filters for verify.yml's machine-readable reports: JUnit XML and the GFLOPS history.

JUnit XML follows the format CI systems read (Jenkins, GitLab, GitHub test reporters): one
``<testsuite>`` of ``<testcase classname=CHECK name=HOST>`` elements, a failing one holding a
``<failure message=...>``. The XML is built with the standard library's ElementTree, which escapes it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

def verify_cases(workers, nodes, versions_by_host, exposure_by_host, reference):
    """The test cases of one verify.yml run: one per check per node.

    - ``parity`` (every node): its Python, Ray and MLX equal the Ray head node's (``reference``);
      ``versions_by_host`` is ``{host: {'python': .., 'ray': .., 'mlx': ..}}``.
    - ``port_exposure`` (every node): no probe host reached one of its Ray ports;
      ``exposure_by_host`` is ``{host: [[open targets], probe host], ...]}`` (ray_port_exposure).
    - ``gcs_membership`` (every node): the GCS lists it Alive; ``nodes`` as saf_ray_membership returns.
    - ``mlx_probe`` (every worker node): its pinned MLX matmul ran there; ``workers`` are
      cluster_verify's rows (``host``, ``passed``, ``message``, ``gflops``, ``executed_on``).

    ``versions_by_host`` and ``exposure_by_host`` hold None for a node whose check did not run
    (verify.yml --tags verify): its case is skipped, saying so, never passed.

    Returns a list of dicts ``{'classname', 'name', 'failure', 'skipped' (None or text), 'properties'}``.
    """
    cases = []
    hosts = list(versions_by_host)
    wanted = versions_by_host.get(reference) or {}
    for host in hosts:
        have = versions_by_host.get(host)
        if have is None:
            cases.append(_case("parity", host, skipped="the parity check did not run in this run"))
            continue
        differ = [f"{key} {have.get(key)} (head node {reference}: {wanted.get(key)})"
                  for key in ("python", "ray", "mlx") if have.get(key) != wanted.get(key)]
        cases.append(_case("parity", host, "; ".join(differ) or None,
                           {key: have.get(key) for key in ("python", "ray", "mlx")}))
    for host in hosts:
        if exposure_by_host.get(host) is None:
            cases.append(_case("port_exposure", host, skipped="the port exposure check did not run in this run"))
            continue
        reached = [f"{probe} reached {', '.join(targets)}" for targets, probe in exposure_by_host[host] if targets]
        cases.append(_case("port_exposure", host, "; ".join(reached) or None))
    by_host = {node.get("host"): node for node in nodes}
    for host in hosts:
        node = by_host.get(host)
        failure = None if node and node.get("alive") else (
            "not listed by the GCS" if not node else f"listed by the GCS but not Alive (node ID {node.get('node_id')})")
        cases.append(_case("gcs_membership", host, failure, {"node_id": (node or {}).get("node_id")}))
    for row in workers:
        cases.append(_case("mlx_probe", row["host"], None if row.get("passed") else (row.get("message") or "failed"),
                           {key: row.get(key) for key in ("executed_on", "gflops", "matrix_size", "median_seconds")}))
    return cases


def _case(check, host, failure=None, properties=None, skipped=None):
    return {"classname": f"saf.verify.{check}", "name": host, "failure": failure, "skipped": skipped,
            "properties": properties or {}}


def junit_xml(cases, suite="saf.verify", timestamp=None):
    """Render ``cases`` (see :func:`verify_cases`) as a JUnit XML document (a string).

    ``timestamp`` (ISO 8601, optional) is written on the ``<testsuite>``. Properties whose value is
    None are left out."""
    root = ET.Element("testsuites")
    attrs = {"name": suite, "tests": str(len(cases)),
             "failures": str(sum(1 for case in cases if case.get("failure"))), "errors": "0",
             "skipped": str(sum(1 for case in cases if case.get("skipped")))}
    if timestamp:
        attrs["timestamp"] = str(timestamp)
    testsuite = ET.SubElement(root, "testsuite", attrs)
    for case in cases:
        element = ET.SubElement(testsuite, "testcase", {"classname": case["classname"], "name": case["name"]})
        properties = {k: v for k, v in (case.get("properties") or {}).items() if v is not None}
        if properties:
            holder = ET.SubElement(element, "properties")
            for key, value in properties.items():
                ET.SubElement(holder, "property", {"name": key, "value": str(value)})
        if case.get("failure"):
            failure = ET.SubElement(element, "failure", {"message": str(case["failure"]).splitlines()[0][:500]})
            failure.text = str(case["failure"])
        elif case.get("skipped"):
            ET.SubElement(element, "skipped", {"message": str(case["skipped"])})
    root.attrib.update(tests=attrs["tests"], failures=attrs["failures"], errors="0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def history_entries(text):
    """Parse the GFLOPS history (JSON Lines: one object per verify.yml run); lines that do not
    parse are skipped, so a truncated last line never stops a run."""
    entries = []
    for line in (text or "").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def gflops_change(workers, history):
    """Add each worker row's change in GFLOPS since the last run at the same matrix size.

    ``workers``: cluster_verify's rows (``host``, ``gflops``, ``matrix_size``). ``history``: the
    entries of :func:`history_entries`, oldest first, each ``{'time', 'matrix_size', 'gflops':
    {host: GFLOPS}}``. Returns new rows with ``previous_gflops`` (None when there is none) and
    ``change``: ``"+3.1%"`` / ``"-0.4%"``, ``"new"`` (no earlier figure for that host and size) or
    ``"-"`` (no figure this run)."""
    rows = []
    for row in workers:
        previous = None
        for entry in reversed(history):
            if entry.get("matrix_size") == row.get("matrix_size") and (entry.get("gflops") or {}).get(row["host"]):
                previous = entry["gflops"][row["host"]]
                break
        gflops = row.get("gflops")
        if not gflops:
            change = "-"
        elif not previous:
            change = "new"
        else:
            change = f"{(gflops - previous) / previous * 100:+.1f}%"
        rows.append(dict(row, previous_gflops=previous, change=change))
    return rows


def history_entry(workers, time):
    """One history line (a JSON string) for this run: ``time`` (ISO 8601), the matrix size and
    the GFLOPS of every worker that passed. Figures of failed probes are not recorded."""
    sizes = {row.get("matrix_size") for row in workers}
    return json.dumps({"time": str(time), "matrix_size": sizes.pop() if len(sizes) == 1 else None,
                       "gflops": {row["host"]: row["gflops"] for row in workers if row.get("passed") and row.get("gflops")}},
                      sort_keys=True)


class FilterModule:
    """SAF report filters."""

    def filters(self):
        return {"verify_cases": verify_cases, "junit_xml": junit_xml, "history_entries": history_entries,
                "gflops_change": gflops_change, "history_entry": history_entry}
