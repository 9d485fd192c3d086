"""Jinja2 filters for verify.yml's machine-readable reports: JUnit XML and the GFLOPS history.

JUnit XML follows the format CI systems read (Jenkins, GitLab, GitHub test reporters): one
``<testsuite>`` of ``<testcase classname=CHECK name=HOST>`` elements, a failing one holding a
``<failure message=...>``. The XML is built with the standard library's ElementTree, which escapes it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

def verify_cases(workers, nodes, versions_by_host, exposure_by_host, reference, expected_workers=None):
    """The test cases of one verify.yml run: one per check per node.

    - ``parity`` (every node): its Python, Ray and MLX equal the Ray head node's (``reference``);
      ``versions_by_host`` is ``{host: {'python': .., 'ray': .., 'mlx': ..}}``. A version that was
      not read (missing, or ``import failed: ...``) fails, also when the head node's is missing too.
    - ``port_exposure`` (every node): no prober reached one of its Ray ports; ``exposure_by_host``
      is ``{host: result}``, a result of saf_exposure.exposure_result (``probed_by``, ``reached``,
      ``not_probed``), or the older ``[[open targets], prober], ...]``. A node that no prober tried
      (``not_probed``, or an empty list) is skipped with the reason, never passed.
    - ``gcs_membership`` (every node): the GCS lists it Alive; ``nodes`` as saf_ray_membership returns.
    - ``mlx_probe`` (every worker node): its pinned MLX matmul ran there; ``workers`` are
      cluster_verify's rows (``host``, ``passed``, ``message``, ``gflops``, ``executed_on``).
    - ``working_set`` (every worker whose probe ran): MLX's recommended working set against the
      wanted minimum (the row's ``working_set``, ``{verdict, reason}``): skipped with the reason when
      no minimum is set or the node has no Metal device.
      ``expected_workers`` (the inventory's ray_workers), when given: a worker without a row fails,
      and so does a run with no worker at all.

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
        unread = [f"{key} not read ({have.get(key) or 'missing'})" for key in ("python", "ray", "mlx")
                  if not _is_version(have.get(key))]
        differ = [f"{key} {have.get(key)} (head node {reference}: {wanted.get(key) or 'not read'})"
                  for key in ("python", "ray", "mlx")
                  if _is_version(have.get(key)) and have.get(key) != wanted.get(key)]
        cases.append(_case("parity", host, "; ".join(unread + differ) or None,
                           {key: have.get(key) for key in ("python", "ray", "mlx")}))
    for host in hosts:
        cases.append(_exposure_case(host, exposure_by_host.get(host)))
    by_host = {node.get("host"): node for node in nodes}
    for host in hosts:
        node = by_host.get(host)
        failure = None if node and node.get("alive") else (
            "not listed by the GCS" if not node else f"listed by the GCS but not Alive (node ID {node.get('node_id')})")
        cases.append(_case("gcs_membership", host, failure, {"node_id": (node or {}).get("node_id")}))
    for row in workers:
        cases.append(_case("mlx_probe", row["host"], None if row.get("passed") else (row.get("message") or "failed"),
                           {key: row.get(key) for key in ("executed_on", "gflops", "matrix_size", "median_seconds")}))
        check = row.get("working_set")
        if check:
            verdict, reason = check.get("verdict"), check.get("reason")
            cases.append(_case("working_set", row["host"], reason if verdict == "failed" else None,
                               {"working_set_gib": row.get("working_set_gib")},
                               skipped=reason if verdict == "skipped" else None))
    if expected_workers is not None:
        probed = {row["host"] for row in workers}
        for host in expected_workers:
            if host not in probed:
                cases.append(_case("mlx_probe", host, "no MLX probe result for this worker node"))
        if not list(expected_workers) and not workers:
            cases.append(_case("mlx_probe", "ray_workers", "the inventory lists no worker node: nothing was probed"))
    return cases


def _is_version(value):
    """A version string, not a value that was never read (None, ``import failed: ...``)."""
    return isinstance(value, str) and bool(value) and not value.startswith("import failed")


def _exposure_case(host, result):
    """The ``port_exposure`` case of one node (see :func:`verify_cases`)."""
    if result is None:
        return _case("port_exposure", host, skipped="the port exposure check did not run in this run")
    if isinstance(result, (list, tuple)):  # [[open targets], prober], ...]
        result = {"probed_by": [prober for _targets, prober in result],
                  "reached": [{"prober": prober, "open": list(targets)} for targets, prober in result if targets]}
    probed_by = list(result.get("probed_by") or [])
    reason = result.get("not_probed") or (None if probed_by else "no prober tried this node")
    if reason:
        return _case("port_exposure", host, skipped=f"not probed: {reason}")
    reached = [f"{r['prober']} reached {', '.join(r['open'])}" for r in result.get("reached") or [] if r.get("open")]
    return _case("port_exposure", host, "; ".join(reached) or None,
                 {"probed_by": ", ".join(probed_by), "ports": len(result.get("targets") or []) or None})


def probe_failures(workers, expected_workers):
    """Why the MLX verification failed, one message each; an empty list only when there was at least
    one worker and every one of ``expected_workers`` (the inventory's ray_workers) has a row in
    ``workers`` (cluster_verify's rows) that passed. A run that probed nothing never passes."""
    failures = [row.get("message") or f"{row.get('host')}: failed" for row in workers if not row.get("passed")]
    probed = {row.get("host") for row in workers}
    failures += [f"{host}: no MLX probe result for this worker node" for host in expected_workers or [] if host not in probed]
    if not workers:
        failures.append("no worker node was probed (the inventory's ray_workers is empty?)")
    return failures


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
                "gflops_change": gflops_change, "history_entry": history_entry, "probe_failures": probe_failures}


# --- Appended for issue 16 (h, i) and the dead-worker finding: per-size history lines, each node's
# --- Ray resources, the logs of a worker process that died.

def history_lines(workers, time):
    """This run's history lines (JSON strings), one per matrix size among ``workers``.

    The probe grows each worker's matrix until one product lasts saf_verify_min_seconds, so workers
    can end at different sizes. :func:`history_entry` records one size per line (``None`` when they
    differ, which :func:`gflops_change` never matches), so each size gets its own line, built by
    :func:`history_entry` from the rows of that size, in the order sizes first appear: a run whose
    workers share one size writes exactly the one line it always did. No rows, one line."""
    groups = {}
    for row in workers:
        groups.setdefault(row.get("matrix_size"), []).append(row)
    return [history_entry(rows, time) for rows in groups.values()] or [history_entry([], time)]


def _resource_text(resources):
    """``CPU 2, metal_gpu 1, memory 7.5 GiB, object_store_memory 256 MiB``: Ray's per-node markers
    (``node:...``) left out, memory in MiB or GiB (bytes in ``ray.nodes()``)."""
    parts = []
    for name in sorted(resources or {}):
        if name.startswith("node:"):
            continue
        value = resources[name]
        if name in ("memory", "object_store_memory") and isinstance(value, (int, float)):
            text = f"{value / 2 ** 30:.1f} GiB" if value >= 2 ** 30 else f"{round(value / 2 ** 20)} MiB"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        parts.append(f"{name} {text}")
    return ", ".join(parts) or "none"


def node_resource_rows(alive_nodes, members=None):
    """One summary row per Alive Ray node: ``host`` (inventory name, from ``members``, the
    saf_ray_membership nodes ``{host, address, node_id}``; else Ray's hostname), ``address``,
    ``node_id`` and ``resources`` (text of ray.nodes()' ``Resources``, e.g. ``CPU 28, metal_gpu 1,
    memory 180.0 GiB``). ``alive_nodes``: saf_mlx_probe's ``alive_nodes``. Inventory order first."""
    by_id = {node.get("node_id"): node for node in alive_nodes or []}
    rows, seen = [], set()
    for member in members or []:
        node = by_id.get(member.get("node_id"))
        if node is None:
            continue
        seen.add(member.get("node_id"))
        rows.append({"host": member.get("host"), "address": node.get("address"), "node_id": node.get("node_id"),
                     "resources": _resource_text(node.get("resources"))})
    for node in alive_nodes or []:
        if node.get("node_id") not in seen:
            rows.append({"host": node.get("hostname"), "address": node.get("address"), "node_id": node.get("node_id"),
                         "resources": _resource_text(node.get("resources"))})
    return rows


def worker_log_note(result):
    """What cluster_verify adds to the failure of a worker whose process died running the probe,
    from its registered run of files/worker_logs.py on that node (one loop result): the script's
    summary (exit code or signal, the last lines of the worker's logs), or why it could not be read."""
    host = (result.get("item") or {}).get("host", "?")
    if result.get("unreachable"):
        return f"its logs on {host} could not be read: the node is unreachable ({result.get('msg', '')})".rstrip()
    try:
        found = json.loads(result.get("stdout") or "")
    except ValueError:
        found = None
    if not isinstance(found, dict) or not found.get("summary"):
        reason = (result.get("stderr") or result.get("msg") or "no output").strip().splitlines()[-1:] or ["no output"]
        return f"its logs on {host} could not be read: {reason[0]}"
    return f"On {host}: {found['summary']}"


_REPORT_FILTERS = FilterModule.filters


def _filters(self):
    """The filters above, and the ones appended after them."""
    return dict(_REPORT_FILTERS(self), history_lines=history_lines, node_resource_rows=node_resource_rows,
                worker_log_note=worker_log_note)


FilterModule.filters = _filters
