"""roles/ray_port_exposure/files/tcp_probe.py against real sockets on this machine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "ray_port_exposure" / "files" / "tcp_probe.py"


def test_open_closed_and_silent_ports():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    open_target = f"127.0.0.1:{listener.getsockname()[1]}"
    closed_target = f"127.0.0.1:{closed.getsockname()[1]}"
    silent_target = "192.0.2.1:9"  # TEST-NET-1: nothing answers, the connection times out
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT), "1", open_target, closed_target, silent_target],
                              capture_output=True, text=True, timeout=30, check=True)
    finally:
        listener.close()
        closed.close()
    result = json.loads(proc.stdout)
    assert result["open"] == [open_target]
    assert closed_target in result["closed"]
    # Without a route the kernel refuses at once (closed); with one, nothing answers (silent).
    assert silent_target in result["silent"] + result["closed"]
    assert sorted(result["open"] + result["closed"] + result["silent"]) == sorted(
        [open_target, closed_target, silent_target])
