"""Wait until a freshly started Ray node is up, or report that its raylet died.

Usage: node_ready.py [--appear] RAYLET_PATTERN TIMEOUT [AGENT_HOST AGENT_PORT]

Up means: the raylet (a process whose command line matches the regular expression
RAYLET_PATTERN) is running and, when AGENT_PORT is given, the dashboard agent accepts TCP
connections on AGENT_HOST:AGENT_PORT. The agent opens that port only after loading its modules,
which is where Ray 2.49.2's agent can crash and take the raylet with it (ray-project/ray#56157).
With --appear (Ray started by launchd or systemd, in the background) the raylet is first awaited:
it counts as died only after it has been seen. Exit 0 when up, 1 when the raylet died, 2 on timeout (TIMEOUT seconds). Reads `ps`, so it works
on Linux and macOS alike.
"""

import re
import socket
import subprocess
import sys
import time


def raylet_running(pattern):
    """Whether any process's command line matches ``pattern`` (this script, and the shell that
    started it, carry the pattern in their own arguments and do not count)."""
    listing = subprocess.run(["ps", "-A", "-o", "command="], capture_output=True, text=True, check=True).stdout
    return any(re.search(pattern, line) for line in listing.splitlines() if "node_ready.py" not in line)


def port_open(host, port):
    """Whether ``host:port`` accepts a TCP connection within one second."""
    try:
        socket.create_connection((host, port), 1).close()
        return True
    except OSError:
        return False


def main(argv):
    appear = argv[:1] == ["--appear"]
    argv = argv[1:] if appear else argv
    pattern, timeout = argv[0], float(argv[1])
    agent = (argv[2], int(argv[3])) if len(argv) > 3 else None
    deadline = time.monotonic() + timeout
    seen = not appear
    while time.monotonic() < deadline:
        if not raylet_running(pattern):
            if seen:
                print("the raylet exited")
                return 1
            time.sleep(0.5)
            continue
        seen = True
        if agent is None or port_open(*agent):
            print("up")
            return 0
        time.sleep(0.5)
    if not seen:
        print("no raylet started within %g s" % timeout)
    else:
        print("the dashboard agent did not open port %d within %g s" % (agent[1], timeout))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
