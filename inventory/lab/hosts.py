#!/usr/bin/env python3
"""The lab's inventory: as many cluster hosts as the lab runs (Ansible's script inventory).

The lab (lab/saflab.py, `make lab-up`) builds N cluster hosts, two by default
(`SAF_LAB_HOSTS=3 make demo` gives three). This script lists exactly those, so site.yml and
verify.yml grow with the lab and nothing else changes:

    saf_cluster
      ray_head:    ALPHA                      (the first host)
      ray_workers: BETA, GAMMA, ... up to N   (the others)
    saf_probes:    PROBE                      (on the bridge, never in the cluster)
    lab:           saf_cluster + saf_probes   (connection settings, group_vars/lab.yml)

SAF_LAB_PROBES=0 leaves saf_probes empty, as an inventory of the Macs usually has it: the
controller is then the only prober of Ray's ports (roles/ray_port_exposure).

N is the count of the lab that is up (`cluster_hosts` in .lab/lab.json); with no lab up, it is
$SAF_LAB_HOSTS, else 2, so the inventory still parses and a play fails naming an unreachable
host. Each host gets saf_node_ip (its address on the lab bridge, 198.18.0.0/24, RFC 2544) and
saf_node_hostname (NAME.local), from the lab tool's own host table.

Usage (Ansible calls it): hosts.py --list | --host NAME
"""

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))

import saflab  # noqa: E402  (the lab tool: host names, addresses and the lab record)


def cluster_count(record_path: Path, environ: dict) -> int:
    """Number of cluster hosts: the running lab's, else $SAF_LAB_HOSTS, else saflab.DEFAULT_HOSTS.

    Raises ValueError naming the value when $SAF_LAB_HOSTS is not a count the lab can build."""
    try:
        recorded = json.loads(record_path.read_text()).get("cluster_hosts")
    except (OSError, ValueError):
        recorded = None
    if recorded:
        return int(recorded)
    value = environ.get("SAF_LAB_HOSTS", str(saflab.DEFAULT_HOSTS))
    try:
        return saflab.host_count(value)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"SAF_LAB_HOSTS: {exc}") from exc


def inventory(count: int, probes: bool = True) -> dict:
    """Ansible's script-inventory JSON for a lab of `count` cluster hosts plus the probe (in
    group saf_probes unless ``probes`` is false)."""
    cluster = saflab.CLUSTER_HOSTS[:count]

    def node(spec):
        return {"saf_node_ip": spec.address, "saf_node_hostname": spec.hostname}

    hostvars = {spec.name: node(spec) for spec in cluster}
    hostvars[saflab.PROBE.name] = {"saf_node_ip": saflab.PROBE.address}
    return {
        "_meta": {"hostvars": hostvars},
        "saf_cluster": {"children": ["ray_head", "ray_workers"]},
        "ray_head": {"hosts": [cluster[0].name]},
        "ray_workers": {"hosts": [spec.name for spec in cluster[1:]]},
        "saf_probes": {"hosts": [saflab.PROBE.name] if probes else []},
        "lab": {"children": ["saf_cluster", "saf_probes"]},
    }


def main(argv: list) -> int:
    if argv[:1] == ["--host"]:
        print("{}")  # every host's variables are in --list's _meta
        return 0
    if argv[:1] != ["--list"]:
        print("usage: hosts.py --list | --host NAME", file=sys.stderr)
        return 2
    try:
        count = cluster_count(saflab.STATE_DIR / "lab.json", os.environ)
    except ValueError as exc:
        print(f"inventory/lab/hosts.py: {exc}", file=sys.stderr)
        return 1
    probes = os.environ.get("SAF_LAB_PROBES", "1") != "0"
    print(json.dumps(inventory(count, probes), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
