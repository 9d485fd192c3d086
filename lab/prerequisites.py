#!/usr/bin/env python3
"""The system packages the lab, the tests and the bench need on the controller, in one list.

    python3 lab/prerequisites.py            # install what is missing (root + apt-get), else say what to run
    python3 lab/prerequisites.py --check    # only report; exit 1 when something is missing

`make prerequisites` runs the first form; `make demo`, `make test`, `make bench` and `.ci/run`
depend on it. It does nothing when everything is present. Where it cannot install (not root, or
no apt-get), it stops with one message naming every missing package and the command that
installs it. lab/saflab.py checks its own subset (LAB) from this table before touching the machine.
Stdlib only: it runs before the controller's venv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

# (what must exist: a command on PATH or an absolute path, the Debian package, who needs it)
REQUIREMENTS = (
    ("/usr/sbin/sshd", "openssh-server", "lab: each lab host's sshd"),
    ("ssh", "openssh-client", "lab: Ansible's connection to the lab hosts"),
    ("ssh-keygen", "openssh-client", "lab: the lab's host and client keys"),
    ("ip", "iproute2", "lab: network namespaces, veths and the bridge"),
    ("unshare", "util-linux", "lab: each host's UTS, PID and mount namespaces"),
    ("nsenter", "util-linux", "lab: saflab.py exec"),
    ("setpriv", "util-linux", "tests: the pmset double run as another user"),
    ("mount", "mount", "lab: each host's private /tmp and /opt/saf"),
    ("pkill", "procps", "lab and roles: stopping Ray's processes"),
    ("sudo", "sudo", "roles: become to an unprivileged account"),
    ("nft", "nftables", "lab: the Ray firewall on Linux nodes"),
    ("systemd-analyze", "systemd", "tests: `systemd-analyze verify` of the rendered Ray unit"),
    ("rsync", "rsync", "bench: `ray up`'s file mounts"),
    ("/usr/bin/python3", "python3", "lab: the module interpreter of the lab hosts"),
    ("make", "make", "the README's commands"),
)
# What lab/saflab.py needs to build the lab (a subset of the table, by the first column).
LAB = ("/usr/sbin/sshd", "ssh", "ssh-keygen", "ip", "unshare", "nsenter", "mount", "/usr/bin/python3")


def present(what: str) -> bool:
    """True when the command is on PATH, or the absolute path is executable."""
    return os.access(what, os.X_OK) if what.startswith("/") else shutil.which(what) is not None


def venv_works(python: str) -> bool:
    """True when ``python -m venv`` can create a venv with pip (Debian splits it into python3-venv)."""
    try:
        return subprocess.run([python, "-c", "import ensurepip, venv"], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing(requirements=REQUIREMENTS, python: str = "python3", exists=None, has_venv=None) -> dict:
    """``{package: [what needs it, ...]}`` for every requirement not met (``exists`` and ``has_venv``
    default to present() and venv_works())."""
    exists, has_venv = exists or present, has_venv or venv_works
    needed: dict = {}
    for what, package, why in requirements:
        if not exists(what):
            needed.setdefault(package, []).append(f"{what} ({why})")
    resolved = shutil.which(python) or python
    if os.path.realpath(resolved).startswith("/usr/bin/") and not has_venv(resolved):
        needed.setdefault("python3-venv", []).append(f"{python} -m venv (the controller's venv)")
    return needed


def install_command(packages) -> str:
    """The command that installs ``packages`` on Debian or Ubuntu."""
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(sorted(packages))


def can_install() -> str:
    """'' when this process can install with apt-get, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    return ""


def run(argv: list, timeout: float) -> None:
    """Run one install step, its output shown; raise SystemExit naming the step when it fails."""
    print("+ " + " ".join(argv), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"prerequisites: `{' '.join(argv)}` took over {timeout:g} s") from None
    if result.returncode != 0:
        raise SystemExit(f"prerequisites: `{' '.join(argv)}` failed with exit code {result.returncode}")


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="prerequisites.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report what is missing")
    parser.add_argument("--python", default=os.environ.get("PYTHON", "python3"),
                        help="the controller's Python (make's PYTHON)")
    args = parser.parse_args(argv)
    needed = missing(python=args.python)
    if not needed:
        print("prerequisites: every system package is present")
        return 0
    listing = "\n".join(f"  {package}: {'; '.join(whats)}" for package, whats in sorted(needed.items()))
    why_not = "--check given" if args.check else can_install()
    if why_not:
        print(f"prerequisites: missing system packages ({why_not}):\n{listing}\n"
              f"install them with:\n  {install_command(needed)}", file=sys.stderr)
        return 1
    print(f"prerequisites: installing {', '.join(sorted(needed))}:\n{listing}", flush=True)
    run(["apt-get", "update", "-qq"], timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *sorted(needed)], timeout=1200)
    if "openssh-server" in needed and shutil.which("systemctl"):
        # Each lab host runs its own sshd; the machine's own ssh service would only listen on every
        # address of the machine, so it is switched off again.
        subprocess.run(["systemctl", "disable", "--now", "ssh.service"], capture_output=True, timeout=60, check=False)
    still = missing(python=args.python)
    if still:
        print(f"prerequisites: still missing after apt-get: {', '.join(sorted(still))}", file=sys.stderr)
        return 1
    print("prerequisites: installed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
