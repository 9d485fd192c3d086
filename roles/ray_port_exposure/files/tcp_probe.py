"""Try a TCP connection to every target at once; print, as JSON, which ones accepted.

Usage: tcp_probe.py TIMEOUT_SECONDS HOST:PORT [HOST:PORT ...]

All connections are started together (non-blocking) and given TIMEOUT_SECONDS in total, so a
firewall that drops packets costs one timeout, not one per port. Output:
{"open": ["host:port", ...], "closed": [...], "silent": [...]}: open = the handshake completed,
closed = refused or reset (nothing listens, or a reject rule), silent = no answer in time (dropped).
"""
import errno
import json
import selectors
import socket
import sys
import time


def probe(targets, timeout):
    selector = selectors.DefaultSelector()
    result = {"open": [], "closed": [], "silent": []}
    for target in targets:
        host, port = target.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((host, int(port)))
        if code in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            selector.register(sock, selectors.EVENT_WRITE, target)
        else:
            result["closed"].append(target)
            sock.close()
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            result["open" if error == 0 else "closed"].append(key.data)
            selector.unregister(sock)
            sock.close()
    for key in list(selector.get_map().values()):
        result["silent"].append(key.data)
        key.fileobj.close()
    return {k: sorted(v) for k, v in result.items()}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[2:], float(sys.argv[1]))))
