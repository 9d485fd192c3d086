"""Print what this interpreter's venv holds as one JSON object: its Python, Ray and MLX versions
and, given the path of a lock file, the locked packages it lacks or holds at another version.

    python venv_state.py [LOCK]

Output keys: ``python``, ``executable``, ``ray``, ``mlx`` (each version, or ``import failed: ...``)
and, with LOCK, ``lock`` (the path), ``lock_found`` (bool) and ``lock_differs`` (a list of
``name: want W, have H``; empty when every pinned package is installed at its pinned version).

Imports ray and mlx.core for real, so a venv whose files exist but whose packages cannot load (an
interrupted install) fails here instead of at `ray start`. The lock comparison reads the installed
distributions' metadata (importlib.metadata) without importing them: it takes a tenth of a second
where `pip install` of an already satisfied lock takes about two (docs/performance.md).
Used by node_env (to skip pip when nothing differs) and by parity_gate. Runs on Python 3.9 and later.
"""
import json
import os
import platform
import re
import sys
from importlib import metadata

#: A pinned requirement line of a uv/pip-compile lock: ``name[extras]==version`` (then hashes).
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name):
    """PEP 503 normalised project name: ``Ray_CPP`` and ``ray-cpp`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(text):
    """``{canonical name: version}`` of every pinned line of a lock file's text."""
    pins = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed_versions():
    """``{canonical name: version}`` of every distribution this interpreter can see."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def lock_differences(pins, installed):
    """``['name: want W, have H', ...]`` (``have none`` when missing), sorted by name."""
    return ["%s: want %s, have %s" % (name, want, installed.get(name, "none"))
            for name, want in sorted(pins.items()) if installed.get(name) != want]


def imported_version(module):
    try:
        return __import__(module, fromlist=["__version__"]).__version__
    except Exception as exc:  # report any import failure, not only ImportError
        return "import failed: %s" % exc


def main(argv):
    state = {"python": platform.python_version(), "executable": sys.executable,
             "ray": imported_version("ray"), "mlx": imported_version("mlx.core")}
    if len(argv) > 1:
        state["lock"] = argv[1]
        state["lock_found"] = os.path.isfile(argv[1])
        if state["lock_found"]:
            with open(argv[1]) as handle:
                state["lock_differs"] = lock_differences(locked_pins(handle.read()), installed_versions())
    print(json.dumps(state))


if __name__ == "__main__":
    main(sys.argv)
