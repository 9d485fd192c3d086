"""Find or obtain the Pythons the lab runs SAF's nodes on; never assume one is there.

The lab's nodes share this machine's file system, so a node's interpreter is one this machine
has. The default runtime wants Python 3.9.23 (roles/saf/defaults/main.yml); the secure profile
and the upgrade test want a 3.11. For each series, in this order:

1. the exact target release from uv's managed Pythons: already installed, else
   ``uv python install`` (bounded; it downloads from python-build-standalone, which only a
   machine with that access reaches);
2. else a local release of the series: pyenv builds (``$PYENV_ROOT`` or ``~/.pyenv``),
   ``/usr/bin/pythonX.Y``, ``/usr/local/bin/pythonX.Y``, uv-managed builds. The target release
   first, then a release with a committed lock file (``locks/``, one per release), then the
   newest;
3. else an error naming every place looked at and the commands that install one.

A release is what the interpreter prints of itself (``platform.python_version()``), never a
directory name. The discovery's inputs (file trees, the uv CLI, how an interpreter is run) are
parameters, so the order is unit-tested on fake trees (tests/unit/test_lab_pythons.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import Callable, Iterable

UV_INSTALL_TIMEOUT = 90  # seconds: a download of about 30 MB, or a refusal in about 10 s
VERSION_TIMEOUT = 10  # seconds for an interpreter to print its release
SYSTEM_DIRS = ("/usr/bin", "/usr/local/bin")
RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class PythonNotFound(Exception):
    """No interpreter of the wanted series: the message names where it looked and the fixes."""


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """One Python interpreter on this machine."""

    path: str  # absolute path of the executable
    version: str  # what it says of itself, e.g. "3.9.18"
    source: str  # "uv-managed", "pyenv" or "system"

    @property
    def prefix(self) -> str:
        """The installation prefix (the directory above ``bin/``)."""
        return str(Path(self.path).parent.parent)

    def as_vars(self) -> dict:
        """The inventory's view of it."""
        return {"version": self.version, "interpreter": self.path, "prefix": self.prefix, "source": self.source}


def release_key(version: str) -> tuple:
    """Sort key of a release string: (major, minor, micro) as integers; unparsable sorts first."""
    match = RELEASE.match(version)
    return tuple(int(part) for part in match.groups()) if match else (-1,)


def interpreter_version(path: str) -> str | None:
    """The release an interpreter reports, or None when it does not run (bounded)."""
    try:
        result = subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True, timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and RELEASE.match(version) else None


def candidate_paths(series: str, pyenv_root: Path, uv_dir: Path | None,
                    system_dirs: Iterable[str] = SYSTEM_DIRS) -> list[tuple[str, str]]:
    """Executables that may be a Python of ``series`` ("3.9"): ``[(path, source), ...]``, existing only."""
    found = []
    if uv_dir and uv_dir.is_dir():
        for build in sorted(uv_dir.glob(f"cpython-{series}.*")):
            found.append((str(build / "bin" / f"python{series}"), "uv-managed"))
    for build in sorted((pyenv_root / "versions").glob(f"{series}.*")):
        found.append((str(build / "bin" / f"python{series}"), "pyenv"))
    for directory in system_dirs:
        found.append((str(Path(directory) / f"python{series}"), "system"))
    return [(path, source) for path, source in found if os.access(path, os.X_OK)]


def discover(series: str, pyenv_root: Path, uv_dir: Path | None,
             version_of: Callable[[str], str | None] = interpreter_version,
             system_dirs: Iterable[str] = SYSTEM_DIRS) -> list[Interpreter]:
    """Every working interpreter of ``series`` on this machine, one per path."""
    interpreters = []
    for path, source in candidate_paths(series, pyenv_root, uv_dir, system_dirs):
        version = version_of(path)
        if version and version.rsplit(".", 1)[0] == series:
            interpreters.append(Interpreter(path, version, source))
    return interpreters


def choose(target: str, interpreters: list[Interpreter], locked: set[str]) -> Interpreter | None:
    """The interpreter to use: the target release first (uv-managed before others), then a
    release in ``locked`` (releases with a committed lock), then the newest; None when empty."""
    if not interpreters:
        return None
    source_rank = {"uv-managed": 0, "pyenv": 1, "system": 2}

    def rank(interpreter: Interpreter) -> tuple:
        return (interpreter.version != target, interpreter.version not in locked,
                tuple(-part for part in release_key(interpreter.version)), source_rank.get(interpreter.source, 3))

    return sorted(interpreters, key=rank)[0]


def locked_releases(lock_dir: Path, uv_platform: str) -> set[str]:
    """Python releases that have a committed lock file for ``uv_platform`` (``<platform>-py<X.Y.Z>_...txt``)."""
    pattern = re.compile(re.escape(uv_platform) + r"-py(\d+\.\d+\.\d+)_")
    return {match.group(1) for path in lock_dir.glob("*.txt") if (match := pattern.match(path.name))}


def uv_install(uv: str, target: str, timeout: float = UV_INSTALL_TIMEOUT) -> str:
    """Try ``uv python install TARGET``; return '' on success, else why not (one line)."""
    try:
        result = subprocess.run([uv, "python", "install", target], capture_output=True, text=True,
                                timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"uv python install {target} took over {timeout:g} s"
    except OSError as exc:
        return f"uv not runnable: {exc}"
    if result.returncode == 0:
        return ""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return f"uv python install {target} failed: {lines[-1] if lines else 'exit %d' % result.returncode}"


def find_python(series: str, target: str, locked: set[str], *, uv: str | None, pyenv_root: Path,
                uv_dir: Path | None, version_of: Callable[[str], str | None] = interpreter_version,
                installer: Callable[[str, str], str] = uv_install,
                system_dirs: Iterable[str] = SYSTEM_DIRS) -> tuple[Interpreter, list[str]]:
    """The interpreter for ``series`` (see the module docstring for the order), with notes of
    what was tried. Raises PythonNotFound naming the places looked at and how to install one."""
    notes = []

    def look() -> list[Interpreter]:
        return discover(series, pyenv_root, uv_dir, version_of, system_dirs)

    found = look()
    if uv and not any(i.version == target and i.source == "uv-managed" for i in found):
        why_not = installer(uv, target)
        if why_not:
            notes.append(why_not)
        else:
            notes.append(f"uv installed Python {target}")
            found = look()
    chosen = choose(target, found, locked)
    if chosen is None:
        places = [f"{uv_dir}/cpython-{series}.*" if uv_dir else "uv-managed Pythons (no uv)",
                  f"{pyenv_root}/versions/{series}.*", *(f"{d}/python{series}" for d in system_dirs)]
        raise PythonNotFound(
            f"no Python {series} on this machine (looked in: {', '.join(places)})"
            + (f"; {notes[-1]}" if notes else "")
            + f". Install one: `uv python install {target}` (needs python-build-standalone's downloads), "
            f"`pyenv install {target}`, or your distribution's python{series} package")
    if chosen.version != target:
        notes.append(f"Python {target} not available: using {chosen.version} ({chosen.source}, {chosen.path})")
    return chosen, notes
