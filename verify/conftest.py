"""testinfra specs of SAF nodes, checked from outside over the inventory's own connection.

Run against the lab (`make verify-hosts`) or a real inventory:

    .venv/bin/pytest verify --hosts='ansible://saf_cluster' --ansible-inventory=inventory/studio

Commands reach a node over plain SSH with the inventory's connection variables, as Ansible
resolves them (see resolve_connection_vars): one ``ssh`` per command instead of one ad hoc
``ansible`` run per command with ``--force-ansible``, which still works and is slower.

The wanted state of a node comes from the inventory, as site.yml sees it: the literal defaults of
roles/saf/defaults/main.yml, overlaid with the host's inventory variables (group_vars, host_vars),
then with the YAML files named in ``SAF_VERIFY_VARS`` (comma-separated; what ``-e @file`` gave
site.yml, e.g. profiles/secure.yml). A value that only names other values (``{{ saf_root_dir }}/venv``)
is filled in; the templates that need facts (the interpreter on macOS, the Ray user, a node IP
taken from Tailscale) come from the start record site.yml writes on the node
(``saf_ray_start_record``) or from the SSH connection. Otherwise the record is evidence of
what ran, and a spec checks that it agrees with the inventory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
import saf_connection

DEFAULTS = Path(__file__).resolve().parent.parent / "roles" / "saf" / "defaults" / "main.yml"
REFERENCE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Wanted values whose default is a template of facts, and the record's field that says what site.yml made of it.
FROM_RECORD = {"saf_python_interpreter": "interpreter", "saf_venv_dir": "venv", "saf_node_ip": "node_ip"}


def is_literal(value) -> bool:
    return not (isinstance(value, str) and "{{" in value)


def literal_vars(hostvars: dict) -> dict:
    """Role defaults, overlaid with the inventory's variables and SAF_VERIFY_VARS; ``{{ name }}``
    references to literal values filled in; whatever is still a template dropped."""
    values = {**yaml.safe_load(DEFAULTS.read_text()), **hostvars}
    for path in filter(None, os.environ.get("SAF_VERIFY_VARS", "").split(",")):
        values.update(yaml.safe_load(Path(path).read_text()) or {})
    known = {k: v for k, v in values.items() if is_literal(v)}
    pending = {k: v for k, v in values.items() if not is_literal(v)}
    while True:
        filled = {k: REFERENCE.sub(lambda m: str(known.get(m.group(1), m.group(0))), v) for k, v in pending.items()}
        done = {k: v for k, v in filled.items() if is_literal(v)}
        if not done:
            return known
        known.update(done)
        pending = {k: v for k, v in pending.items() if k not in done}


def pytest_configure(config):
    """The areas a spec belongs to; molecule scenarios pick theirs with -m. Connection variables
    reach testinfra resolved (saf_connection.install)."""
    saf_connection.install()
    for marker, what in (("inventory", "the node is the host the inventory names"),
                         ("python", "the pinned interpreter"), ("venv", "the venv with Ray and MLX"),
                         ("ray", "the running Ray node: processes, arguments, environment, sockets"),
                         ("firewall", "the packet filter guarding Ray's ports")):
        config.addinivalue_line("markers", f"{marker}: {what}")


@pytest.fixture(scope="module")
def name(host) -> str:
    """The node's inventory name, for failure messages."""
    return host.backend.host


@pytest.fixture(scope="module")
def wanted(host, name) -> dict:
    """What this node must run: the saf_* variables as site.yml sees them (see the module docstring),
    plus ``head``, ``gcs_address``, ``cluster_addresses`` (every saf_cluster node's address) and ``ray_user`` (saf_ray_user if the inventory sets it, else the SSH user)."""
    hostvars = dict(host.ansible.get_variables())
    want = literal_vars(hostvars)
    head = hostvars["groups"]["ray_head"][0]
    missing = [k for k in FROM_RECORD if not want.get(k)]
    if missing:
        record = read_record(host, name, want["saf_ray_start_record"])
        want.update({k: record[FROM_RECORD[k]] for k in missing})
    if head == name:
        head_ip = want["saf_node_ip"]
    else:
        head_ip = literal_vars(dict(host.backend.ansible_runner.get_variables(head))).get("saf_node_ip")
    if not head_ip:  # the head's address comes from Tailscale: take the one this node's record names
        head_ip = read_record(host, name, want["saf_ray_start_record"])["gcs_address"].rsplit(":", 1)[0]
    want["cluster_addresses"] = [
        want["saf_node_ip"] if node == name else literal_vars(dict(host.backend.ansible_runner.get_variables(node))).get("saf_node_ip")
        for node in hostvars["groups"]["saf_cluster"]]
    want["head"] = head == name
    want["gcs_address"] = f"{head_ip}:{want['saf_ray_gcs_port']}"
    want["ray_user"] = want.get("saf_ray_user") or host.user().name
    return want


def read_record(host, name, path) -> dict:
    record_file = host.file(path)
    assert record_file.exists, f"{name}: no {path}; run site.yml first"
    return json.loads(record_file.content_string)


@pytest.fixture(scope="module")
def record(host, name, wanted) -> dict:
    """The start record site.yml left on this node: what ran, to be checked against ``wanted``."""
    return read_record(host, name, wanted["saf_ray_start_record"])


# --- What runs and what listens. The OS differences live here, nowhere else. ---------------------

@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    uid: int
    args: str

    @property
    def program(self) -> str:
        """The executable's base name as the command line shows it (``raylet``, ``gcs_server``, ``ray::IDLE``)."""
        return self.args.split(" ", 1)[0].rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Listener:
    address: str  # "*" for all interfaces (0.0.0.0, ::, or both); IPv4-mapped IPv6 shown as IPv4
    port: int
    pids: frozenset


def processes(host) -> list:
    """Every process on the node; ``ps -A -ww -o`` is the same on Linux (procps) and macOS."""
    out = host.check_output("ps -A -ww -o pid= -o ppid= -o uid= -o args=")
    rows = (line.split(None, 3) for line in out.splitlines())
    return [Proc(int(r[0]), int(r[1]), int(r[2]), r[3] if len(r) > 3 else "") for r in rows]


def cluster_processes(procs, temp_dir, gcs_address) -> list:
    """This cluster's Ray processes: those whose command line names its temp dir (the GCS, raylet,
    dashboard, agents, monitors) or its GCS address (also the Ray Client server, which names neither
    temp dir nor session), and all their descendants (workers, the dashboard's modules)."""
    pids = {p.pid for p in procs if temp_dir in p.args or f"={gcs_address}" in p.args}
    while True:
        more = {p.pid for p in procs if p.ppid in pids} - pids
        if not more:
            return [p for p in procs if p.pid in pids]
        pids |= more


def listening_tcp(host) -> list:
    """Every listening TCP socket with the PIDs that hold it: ``ss`` on Linux, ``lsof`` on macOS
    (testinfra's host.socket and host.process have no macOS implementation). Needs the rights to see
    Ray's processes: the SSH user is Ray's user or root."""
    found = []
    if host.system_info.type == "darwin":
        out = host.run_expect([0, 1], "lsof -nP -iTCP -sTCP:LISTEN -F pn").stdout
        pid = None
        for line in out.splitlines():
            if line.startswith("p"):
                pid = int(line[1:])
            elif line.startswith("n"):
                found.append((line[1:], {pid}))
    else:
        for line in host.check_output("ss -H -t -l -n -p").splitlines():
            fields = line.split()
            found.append((fields[3], {int(p) for p in re.findall(r"pid=(\d+)", line)}))
    listeners = {}
    for local, pids in found:
        address, port = local.rsplit(":", 1)
        address = address.strip("[]").removeprefix("::ffff:")
        address = "*" if address in ("*", "0.0.0.0", "::") else address
        key = (address, int(port))
        listeners[key] = listeners.get(key, frozenset()) | frozenset(pids)
    return [Listener(a, p, pids) for (a, p), pids in sorted(listeners.items(), key=lambda kv: kv[0][1])]


def environ(host, pid) -> list:
    """A process's environment as NAME=value strings."""
    if host.system_info.type == "darwin":
        return host.check_output(f"ps -E -ww -o command= -p {pid}").split()
    return host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()


@pytest.fixture(scope="module")
def ray_procs(host, wanted) -> list:
    """This cluster's Ray processes on the node (see cluster_processes)."""
    return cluster_processes(processes(host), wanted["saf_ray_temp_dir"], wanted["gcs_address"])


@pytest.fixture(scope="module")
def listeners(host) -> list:
    return listening_tcp(host)


@pytest.fixture(scope="module")
def ray_uid(host, wanted) -> int:
    """The uid of the user Ray must run as."""
    return int(host.check_output(f"id -u {shlex.quote(wanted['ray_user'])}"))


@pytest.fixture(scope="module")
def environ_of(host):
    """environ(host, pid) for this host: a process's environment."""
    return lambda pid: environ(host, pid)
