"""Print, as JSON, the TCP sockets this cluster's Ray processes listen on, on this node.

Usage: ray_sockets.py TEMP_DIR

A process belongs to the cluster when its command line names TEMP_DIR (saf_ray_temp_dir: the GCS,
raylet, dashboard, agents, log monitor, and every worker through its session directory). Uses
psutil, which Ray ships in ray/thirdparty_files; per-process connection lists work without root
on macOS too. Output: [{"pid", "process", "address", "port"}], sorted by port.
"""
import json
import os
import sys

try:
    import psutil
except ImportError:  # Ray's vendored copy
    import ray

    sys.path.insert(0, os.path.join(os.path.dirname(ray.__file__), "thirdparty_files"))
    import psutil


def listening(temp_dir):
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if temp_dir not in cmdline:
            continue
        try:
            connections = proc.net_connections("tcp") if hasattr(proc, "net_connections") else proc.connections("tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                found.append({"pid": proc.info["pid"], "process": proc.info["name"],
                              "address": conn.laddr.ip, "port": conn.laddr.port})
    unique = {(s["address"], s["port"]): s for s in found}
    return sorted(unique.values(), key=lambda s: (s["port"], s["address"]))


if __name__ == "__main__":
    print(json.dumps(listening(sys.argv[1])))
