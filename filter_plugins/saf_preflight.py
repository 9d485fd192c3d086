"""Jinja2 filters for the inventory check (roles/inventory_check), which runs before any host is
touched: the Unix socket paths Ray will create under saf_ray_temp_dir, and whether a node's module
interpreter is a Python that ansible-core (and Mitogen) support.

Each check returns ``{'ok': bool, 'msg': str, ...}``, ``msg`` naming the host, the value found, the
limit and the fix, so the role's assert only prints it.
"""

from __future__ import annotations

import posixpath
import re

# --- Ray's Unix socket paths -------------------------------------------------------------------

#: Longest Unix socket path (bytes, without the terminating NUL) per OS: ``sizeof(sun_path)`` - 1,
#: 104 - 1 on macOS (sys/un.h) and 108 - 1 on Linux. Ray 2.49.2 refuses a longer one itself
#: (``validate_socket_filepath`` in ray/_private/utils.py: "AF_UNIX path length cannot exceed 103
#: bytes"; reported in ray-project/ray#7951 and verl-project/verl#1120).
UNIX_SOCKET_PATH_MAX = {"Darwin": 103, "Linux": 107}
#: The limit used when the node's OS is not known (the inventory check runs without facts): the
#: smallest, macOS's. It costs a Linux node 4 bytes of temp dir.
UNIX_SOCKET_PATH_MAX_ANY_OS = min(UNIX_SOCKET_PATH_MAX.values())

#: The session directory Ray 2.49.2 makes under its temp dir (ray/_private/node.py):
#: ``f"session_{datetime.today().strftime('%Y-%m-%d_%H-%M-%S_%f')}_{os.getpid()}"``, the pid being
#: the head node's ``ray start`` (worker nodes take the session name from the GCS). The date part is
#: always 26 characters; a pid has at most 7 digits (Linux's pid_max tops out at 4194304; macOS
#: pids stay below 100000). Worst case:
RAY_SESSION_WORST = "session_" + "2025-12-31_23-59-59_999999" + "_" + "9" * 7
#: Sockets every node's raylet makes in ``<session>/sockets`` (Node._prepare_socket_file). A worker
#: restarted while the head runs reuses the head's session directory, and Ray names the socket
#: ``plasma_store.1``, ``.2``, ... while an earlier file is still there (Node._make_inc_temp): two
#: digits are allowed for that.
RAY_NODE_SOCKETS = ("plasma_store.99", "raylet.99")
#: Sockets of the dashboard's subprocess modules on the head node, ``sockets/dash_<module>``
#: (ray/dashboard/subprocesses/utils.py get_socket_path; SAF installs ray[default], so the head runs
#: the dashboard). The longest of all: ``dash_MetricsHead``.
RAY_HEAD_SOCKETS = tuple("dash_" + name for name in (
    "DataHead", "EventHead", "JobHead", "MetricsHead", "NodeHead", "ReportHead", "ServeHead", "StateHead",
    "TrainHead"))
#: The shipped saf_ray_temp_dir (saf_root_dir /opt/saf), offered in the message.
_DEFAULT_TEMP_DIR = "/opt/saf/ray/tmp"


def _bytes(path):
    return len(path.encode("utf-8"))


def ray_socket_paths(temp_dir, head=False):
    """Worst-case paths of the Unix sockets Ray 2.49.2 makes under ``temp_dir`` (its ``--temp-dir``,
    saf_ray_temp_dir) on one node, longest first: the raylet's and the object store's on every node,
    the dashboard modules' too on the head node (``head``)."""
    sockets_dir = posixpath.join(str(temp_dir), RAY_SESSION_WORST, "sockets")
    names = RAY_NODE_SOCKETS + (RAY_HEAD_SOCKETS if head else ())
    return sorted((posixpath.join(sockets_dir, name) for name in names), key=_bytes, reverse=True)


def ray_socket_path_check(temp_dir, host, head=False, limit=UNIX_SOCKET_PATH_MAX_ANY_OS):
    """Whether every Unix socket path Ray makes under ``temp_dir`` on ``host`` fits ``limit`` bytes.

    Returns ``{ok, path, bytes, limit, max_temp_dir_bytes, msg}``: ``path`` is the longest socket path
    (worst case, see :func:`ray_socket_paths`) and ``bytes`` its length in bytes (UTF-8);
    ``max_temp_dir_bytes`` the longest temp dir that fits; ``msg`` is empty when ``ok``.
    """
    temp_dir = str(temp_dir)
    limit = int(limit)
    path = ray_socket_paths(temp_dir, head)[0]
    size = _bytes(path)
    room = limit - (size - _bytes(temp_dir.rstrip("/") or "/"))
    result = {"ok": size <= limit, "path": path, "bytes": size, "limit": limit, "max_temp_dir_bytes": room,
              "msg": ""}
    if not result["ok"]:
        other = ", ".join("%s %d" % (name, value) for name, value in sorted(UNIX_SOCKET_PATH_MAX.items())
                          if value != limit)
        result["msg"] = (
            "%s: saf_ray_temp_dir %s is too long for Ray's Unix sockets: the longest path Ray would make under "
            "it (worst case) is %s, %d bytes, over the %d-byte limit of a Unix socket path (macOS's, used for "
            "every node because the OS is not known before any host is touched; %s). Ray would refuse to "
            "start (\"AF_UNIX path length cannot exceed %d bytes\"). Use a temp dir of at most %d bytes, e.g. "
            "the default %s."
            % (host, temp_dir, path, size, limit, other, limit, room, _DEFAULT_TEMP_DIR))
    return result


# --- the module interpreter -------------------------------------------------------------------

#: Target (module) Pythons of ansible-core 2.19 (requirements.txt pins 2.19.14): 3.8, the minimum
#: its module_utils/basic.py enforces (``_PY_MIN``), to 3.13, the newest in its support matrix
#: (docs.ansible.com "Releases and maintenance": target Python 3.8 - 3.13) and in its interpreter
#: discovery list (config/base.yml INTERPRETER_PYTHON_FALLBACK).
ANSIBLE_TARGET_PYTHONS = {"name": "ansible-core 2.19", "min": "3.8", "max": "3.13", "fix": ""}
#: Target Pythons of Mitogen 0.3.54 (the mitogen_linear strategy, ansible.cfg): 2.4 (setup.py's
#: python_requires) to 3.14, the newest its changelog declares support for (v0.3.29, "Python 3.14
#: support", mitogen-hq/mitogen#1287) and its CI runs. Without Mitogen this range does not apply.
MITOGEN_TARGET_PYTHONS = {"name": "Mitogen 0.3.54 (the mitogen_linear strategy)", "min": "2.4", "max": "3.14",
                          "fix": "run without Mitogen: ANSIBLE_STRATEGY=linear ansible-playbook ..."}

_RELEASE = re.compile(r"^\s*(\d+)\.(\d+)\.(\d+)\S*\s*$")


def _release_tuple(text):
    return tuple(int(part) for part in str(text).split(".")[:2])


def python_release(text):
    """The Python release (``3.13.1``) that ``platform.python_version()`` printed in ``text`` (the last
    line that is one, ignoring anything else a login shell printed), or None."""
    for line in reversed(str(text or "").splitlines()):
        match = _RELEASE.match(line)
        if match:
            return ".".join(match.groups())
    return None


def _supported(release, span):
    return _release_tuple(span["min"]) <= _release_tuple(release) <= _release_tuple(span["max"])


def _span(span):
    return "%s runs modules on Python %s to %s" % (span["name"], span["min"], span["max"])


def homebrew_python_formula(interpreter):
    """Where Homebrew would provide ``interpreter``: ``{'prefix', 'formula'}``, or {} when it cannot.

    ``interpreter`` (ansible_python_interpreter) is ``<prefix>/bin/pythonX.Y`` or
    ``<prefix>/opt/python@X.Y/bin/pythonX.Y``; ``python@X.Y`` provides it, from the Homebrew whose
    ``brew`` is ``<prefix>/bin/brew`` (the inventory check installs it only when that exists).
    Homebrew's unversioned ``python3`` is left alone: it moves to each new release, past the range
    Ansible supports, so the inventory check refuses it instead.
    """
    path = posixpath.normpath(str(interpreter or ""))
    for pattern in (r"^(/.+)/opt/python@(3\.\d+)/bin/python3\.\d+$", r"^(/.+)/bin/python(3\.\d+)$"):
        match = re.match(pattern, path)
        if match:
            return {"prefix": match.group(1), "formula": "python@" + match.group(2)}
    return {}


def module_python_check(raw, host, interpreter, strategy="", ranges=None):
    """Whether ``interpreter`` (ansible_python_interpreter) on ``host`` is a Python Ansible can run
    modules with, from ``raw``: the result of ``raw: <interpreter> -c 'import platform;
    print(platform.python_version())'`` (``rc``, ``stdout``, ``stderr``).

    ``ranges`` (default: ansible-core 2.19's, and Mitogen's when ``strategy`` names a Mitogen
    strategy) is a list of ``{name, min, max, fix}``; a release outside one fails naming that range,
    and ``fix`` (ANSIBLE_STRATEGY=linear for Mitogen) is offered when only ranges with one are exceeded.
    The other fix names a Python within every range (Homebrew's versioned python@X.Y on a Mac).

    Returns ``{ok, release, msg}``; ``release`` is None when the interpreter did not print one.
    """
    if ranges is None:
        ranges = [ANSIBLE_TARGET_PYTHONS]
        if "mitogen" in str(strategy or ""):
            ranges.append(MITOGEN_TARGET_PYTHONS)
    raw = raw or {}
    release = python_release(raw.get("stdout"))
    lowest = max((span["min"] for span in ranges), key=_release_tuple)
    highest = min((span["max"] for span in ranges), key=_release_tuple)
    install = ("on a Mac, `brew install python@%s` as the account that owns Homebrew, then "
               "ansible_python_interpreter: /opt/homebrew/bin/python%s (a versioned path: Homebrew's python3 "
               "moves to each new Python release)" % (highest, highest))
    if release is None:
        # ssh -tt (raw over SSH) merges stderr into stdout and adds "Shared connection to ... closed."
        lines = (str(raw.get("stderr") or "") + "\n" + str(raw.get("stdout") or "")).splitlines()
        detail = " | ".join(line.strip() for line in lines
                            if line.strip() and not line.strip().startswith("Shared connection to "))
        msg = ("%s: the module interpreter %s (ansible_python_interpreter) did not print its release (exit %s%s). "
               "Install it or name another Python %s to %s: %s."
               % (host, interpreter, raw.get("rc", "unknown"), (": " + detail[-400:]) if detail else "",
                  lowest, highest, install))
        return {"ok": False, "release": None, "msg": msg}
    exceeded = [span for span in ranges if not _supported(release, span)]
    if not exceeded:
        return {"ok": True, "release": release, "msg": ""}
    fixes = [span["fix"] for span in exceeded]
    if all(fixes):
        fix = "%s (or name a Python %s to %s: %s)" % ("; ".join(fixes), lowest, highest, install)
    else:
        fix = "name a Python %s to %s: %s" % (lowest, highest, install)
    msg = ("%s: the module interpreter %s (ansible_python_interpreter) is Python %s, but %s. Fix: %s."
           % (host, interpreter, release, "; ".join(_span(span) for span in exceeded), fix))
    return {"ok": False, "release": release, "msg": msg}


class FilterModule:
    """SAF's inventory-check filters."""

    def filters(self):
        return {
            "ray_socket_paths": ray_socket_paths,
            "ray_socket_path_check": ray_socket_path_check,
            "python_release": python_release,
            "module_python_check": module_python_check,
            "homebrew_python_formula": homebrew_python_formula,
        }
