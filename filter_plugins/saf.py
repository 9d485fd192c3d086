"""Jinja2 filters for SAF: the parity table, the verify summary table, macOS power settings, lock
and venv names."""

from __future__ import annotations

import re


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


MISSING = "missing"


def _version_cell(versions, key):
    value = (versions or {}).get(key)
    return MISSING if value is None else str(value)


def parity_report(versions_by_host, keys, reference=None):
    """Compare ``versions_by_host`` (``{host: {key: version}}``) on ``keys``.

    ``reference`` names the host the others must match: the Ray head node, since Ray compares
    every joining node's versions with the head's. Without it (or when it is not in
    ``versions_by_host``) the most common value of each key is the reference.

    Returns a dict with ``ok`` (every host has the same value for every key), ``mismatched``
    (the keys whose values differ, in ``keys`` order) and ``table`` (see :func:`text_table`:
    a ``host`` column then one column per key; rows that differ from the reference end with
    ``<- differs``). A missing value (absent or None) counts as a difference, also when every host
    lacks it, and no host at all is not ok: versions that were never read never pass.
    """
    keys = list(keys)
    rows = [
        dict({"host": host}, **{key: _version_cell(versions, key) for key in keys})
        for host, versions in versions_by_host.items()
    ]
    mismatched = [key for key in keys if len({row[key] for row in rows}) > 1 or any(row[key] == MISSING for row in rows)]
    by_host = {row["host"]: row for row in rows}
    if reference in by_host:
        wanted = {key: by_host[reference][key] for key in keys}
    else:
        wanted = {}
        for key in keys:
            values = [row[key] for row in rows]
            wanted[key] = max(sorted(set(values)), key=values.count, default=MISSING)
    markers = ["  <- differs" if any(row[key] != wanted[key] or row[key] == MISSING for key in keys) else ""
               for row in rows]
    return {
        "ok": bool(rows) and not mismatched,
        "mismatched": mismatched,
        "table": text_table(rows, ["host"] + keys, markers),
    }


# `pmset -g custom` and `pmset -g` print a section header flush left ("AC Power:", "Currently in
# use:"), then one setting a line: a space, the key left-justified in 20 columns, a space, the value
# (Apple's pmset.c: printf(" %-20s ", key) then the number). A key may hold spaces ("Sleep On Power
# Button" is printed under its raw preference name) and is then wider than 20 columns; `pmset -g`
# may follow the value with a note in brackets ("(sleep prevented by powerd, coreaudiod)").
_PMSET_HEADER = re.compile(r"^(?P<name>\S[^:]*):\s*$")
_PMSET_SETTING = re.compile(r"^\s+(?P<key>\S.*?)\s+(?P<value>\S+)(?:\s+\(.*\))?\s*$")
# `pmset -g` headers get short names; the per-power-source headers keep pmset's own words.
_PMSET_SECTION_NAMES = {"Currently in use": "current", "System-wide power settings": "system"}


def pmset_settings(text):
    """Parse the output of macOS ``pmset -g custom`` or ``pmset -g`` into ``{section: {key: value}}``.

    The format is pmset's own (Apple's PowerManagement ``pmset.c``): a header line flush left
    ending in ``:``, then indented ``<key><spaces><value>`` lines. ``pmset -g custom`` has one
    section per power source, named as pmset prints them: ``"AC Power"`` only on a desktop such as
    a Mac Studio, ``"Battery Power"`` and ``"AC Power"`` on a laptop (``"UPS Power"`` with a UPS).
    ``pmset -g`` has ``"System-wide power settings:"`` (section ``"system"``, holding
    ``SleepDisabled`` when it was ever set) and ``"Currently in use:"`` (section ``"current"``).

    Values are strings, the first token after the key: ``"0"``, ``"/var/vm/sleepimage"``; a
    trailing note such as ``(sleep prevented by powerd)`` is dropped. Keys keep pmset's spelling,
    spaces included (``"Sleep On Power Button"``). A section with no settings maps to ``{}``;
    lines outside any section, and unindented lines that are not headers, are ignored. Never raises
    on odd input: text that is not pmset output gives ``{}``.
    """
    sections = {}
    current = None
    for line in str(text or "").splitlines():
        if not line.strip():
            continue
        header = _PMSET_HEADER.match(line)
        if header:
            name = header.group("name").strip()
            current = sections.setdefault(_PMSET_SECTION_NAMES.get(name, name), {})
            continue
        setting = _PMSET_SETTING.match(line)
        if setting and current is not None:
            current[setting.group("key")] = setting.group("value")
    return sections


def pmset_drift(settings, wanted):
    """List the settings of one pmset section (``settings``, ``{key: value}``) that differ from ``wanted``.

    Returns a list, in ``wanted`` order, of ``{"key", "current", "wanted"}`` dicts, one per key
    whose value differs when both are compared as strings (``str(0) == "0"``), so integers from
    YAML match the digits pmset prints. A key missing from ``settings`` counts as drift with
    ``current`` None. ``wanted`` values are returned as strings. ``None`` for either argument
    counts as an empty dict. An empty list means nothing to change.
    """
    settings = settings or {}
    drift = []
    for key, value in (wanted or {}).items():
        current = settings.get(key)
        if current is None or str(current) != str(value):
            drift.append({"key": key, "current": None if current is None else str(current), "wanted": str(value)})
    return drift


def lock_name(requirements, uv_platform, python):
    """File name (str) of the lock for ``requirements`` (list of pip requirement strings) on one
    target: its uv platform, Python version and each requirement with extras, e.g.
    ``x86_64-manylinux_2_35-py3.9.18_ray-default-2.49.2_mlx-cpu-0.29.1.txt``. Used by
    playbooks/lock.yml to write locks/ and by node_env to find the node's lock.
    """
    parts = [re.sub(r"[\[\]=,<>!~ ]+", "-", str(r)).strip("-") for r in requirements]
    return "%s-py%s_%s.txt" % (uv_platform, python, "_".join(parts))


def runtime_venv(runtime, root):
    """Directory (str) of the venv for one runtime tuple ``runtime`` (``{'python', 'ray', 'mlx'}``)
    under ``root`` (saf_root_dir): ``ROOT/venvs/pyPYTHON-rayRAY-mlxMLX``. node_env builds it;
    saf_venv_dir is a link to the active one (runtime_switch moves the link).

    Raises ValueError naming the key when a version is empty or holds a ``-`` or ``/``."""
    for key in ("python", "ray", "mlx"):
        value = str(runtime.get(key) or "")
        if not value or "-" in value or "/" in value:
            raise ValueError(f"runtime {key} version {value!r} cannot name a venv directory")
    return "%s/venvs/py%s-ray%s-mlx%s" % (str(root).rstrip("/"), runtime["python"], runtime["ray"], runtime["mlx"])


RUNTIME_KEYS = ("python", "ray", "mlx")


def runtime_tuples(runtimes):
    """The distinct runtime tuples among ``runtimes`` (a list of dicts such as ray_node's record's
    ``runtime``, which may also carry ``interpreter``): a list of ``{'python', 'ray', 'mlx'}``
    dicts, in first-seen order. Any other key (the interpreter's path) is left out, so nodes whose
    interpreters live at different paths still count as one runtime. An empty dict (no record)
    counts as a tuple of its own. Used by upgrade.yml and rollback.yml to require one runtime."""
    seen = []
    for runtime in runtimes:
        item = {key: (runtime or {}).get(key) for key in RUNTIME_KEYS} if runtime else {}
        if item not in seen:
            seen.append(item)
    return seen


def upgrade_failures(nodes):
    """The messages of every node (``nodes``: a list of hostvars) that noted an ``upgrade_failure``
    during upgrade.yml, in inventory order; empty when the new runtime works."""
    return [str(node.get("upgrade_failure")) for node in nodes if node.get("upgrade_failure")]


class FilterModule:
    """SAF filters."""

    def filters(self):
        return {
            "lock_name": lock_name,
            "parity_report": parity_report,
            "pmset_drift": pmset_drift,
            "pmset_settings": pmset_settings,
            "runtime_tuples": runtime_tuples,
            "runtime_venv": runtime_venv,
            "text_table": text_table,
            "upgrade_failures": upgrade_failures,
        }
