"""Jinja2 filters for SAF: the parity table and the verify summary table."""

from __future__ import annotations


def text_table(rows, columns, markers=None):
    """Render ``rows`` (a list of dicts) as fixed-width lines, one column per key in ``columns``.

    Returns a list of strings: a header, a rule, then one line per row. ``markers`` (optional,
    same length as ``rows``) is appended to each row's line. Missing keys render as ``-``.
    """
    columns = list(columns)
    cells = [[str(row.get(col, "-")) if row.get(col) is not None else "-" for col in columns] for row in rows]
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)]
    markers = list(markers) if markers is not None else [""] * len(rows)

    def line(values):
        return "  ".join(value.ljust(width) for value, width in zip(values, widths)).rstrip()

    return [line(columns), line(["-" * w for w in widths])] + [
        (line(values) + marker).rstrip() for values, marker in zip(cells, markers)
    ]


def parity_report(versions_by_host, keys, reference=None):
    """Compare ``versions_by_host`` (``{host: {key: version}}``) on ``keys``.

    ``reference`` names the host the others must match: the Ray head node, since Ray compares
    every joining node's versions with the head's. Without it (or when it is not in
    ``versions_by_host``) the most common value of each key is the reference.

    Returns a dict with ``ok`` (every host has the same value for every key), ``mismatched``
    (the keys whose values differ, in ``keys`` order) and ``table`` (see :func:`text_table`:
    a ``host`` column then one column per key; rows that differ from the reference end with
    ``<- differs``). A missing value counts as a difference.
    """
    keys = list(keys)
    rows = [
        dict({"host": host}, **{key: str((versions or {}).get(key, "missing")) for key in keys})
        for host, versions in versions_by_host.items()
    ]
    mismatched = [key for key in keys if len({row[key] for row in rows}) > 1]
    by_host = {row["host"]: row for row in rows}
    if reference in by_host:
        wanted = {key: by_host[reference][key] for key in keys}
    else:
        wanted = {}
        for key in keys:
            values = [row[key] for row in rows]
            wanted[key] = max(sorted(set(values)), key=values.count)
    markers = ["  <- differs" if any(row[key] != wanted[key] for key in keys) else "" for row in rows]
    return {
        "ok": not mismatched,
        "mismatched": mismatched,
        "table": text_table(rows, ["host"] + keys, markers),
    }


class FilterModule:
    """SAF filters."""

    def filters(self):
        return {"parity_report": parity_report, "text_table": text_table}
