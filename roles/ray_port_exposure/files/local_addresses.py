"""Say which of the given IPv4 addresses this machine holds, and from which address it reaches each.

Usage: local_addresses.py ADDRESS [ADDRESS ...]

Runs on the controller, before it probes Ray's ports: a probe from a machine that holds a cluster
address (the controller is a cluster node) would pass the firewall and prove nothing.
An address is this machine's when a socket can bind to it: the kernel refuses, with
EADDRNOTAVAIL, an address no interface holds (Linux and macOS alike; no listing of interfaces, no
root). The source address towards each one is the one the kernel picks for a UDP "connection",
which sends no packet; null when there is no route to it.
Output: {"own": [address, ...], "source": {address: source address or null}}.
"""
import json
import socket
import sys


def holds(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 0))
        return True
    except (OSError, ValueError):
        return False
    finally:
        sock.close()


def source(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((address, 9))  # UDP: a route lookup only, nothing is sent
        return sock.getsockname()[0]
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def view(addresses):
    return {"own": sorted(a for a in set(addresses) if holds(a)),
            "source": {a: source(a) for a in addresses}}


if __name__ == "__main__":
    print(json.dumps(view(sys.argv[1:])))
