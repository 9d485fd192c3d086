"""TEST DOUBLES: a Mac's fixed paths laid out under a lab host's private /opt/saf/macos.

The doubles of ``tests/doubles/bin`` (brew, pyenv, uv, launchctl, pmset, pfctl, sysctl, the Tailscale CLI)
go where ``tests/lab/macos/overrides.yml`` points the roles, with the state files they read; a
marked host (``/opt/saf/macos/FORCE_DARWIN_FACTS``) reports macOS facts through
``tests/doubles/modules/saf_test_darwin_facts.py``. Used by ``tests/lab/test_4_macos.py`` and, as a
command, by the molecule scenarios of the macOS-only roles::

    python3 tests/lab/macos_doubles.py install DELTA --darwin --peer DELTA=198.18.0.14 --peer EPSILON=198.18.0.15
    python3 tests/lab/macos_doubles.py remove DELTA
"""

from __future__ import annotations

import argparse
import json
import sys

from labkit import LAB_PYTHON, REPO, lab_exec, put_file

MAC = "/opt/saf/macos"
BREW = f"{MAC}/opt/homebrew"
DOUBLES = REPO / "tests" / "doubles"


def sh(host: str, script: str, timeout: float = 120) -> str:
    """Run ``script`` with sh inside lab host ``host``; fail the test when it fails."""
    proc = lab_exec(host, "sh", "-ec", script, timeout=timeout)
    assert proc.returncode == 0, f"{host}: {script}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def tailscale_status(me: str, peers: dict, offline: tuple = ()) -> dict:
    """A ``tailscale status --json`` document for ``me`` in a tailnet of ``peers`` ({name: IPv4})."""
    def node(index, name, ip):
        return {"ID": f"n{index}", "PublicKey": f"nodekey:{index:064x}", "HostName": name,
                "DNSName": f"{name.lower()}.tailnet-0000.ts.net.", "OS": "macOS", "UserID": 1,
                "TailscaleIPs": [ip, f"fd7a:115c:a1e0::{index}"], "Online": name not in offline,
                "Active": True, "CurAddr": f"{ip}:41641", "Relay": "fra", "LastSeen": "2026-11-29T10:00:00Z"}
    nodes = {name: node(i + 1, name, ip) for i, (name, ip) in enumerate(sorted(peers.items()))}
    return {"Version": "1.86.2-t0000", "BackendState": "Running", "TailscaleIPs": nodes[me]["TailscaleIPs"],
            "Self": nodes[me], "MagicDNSSuffix": "tailnet-0000.ts.net",
            "Peer": {n["PublicKey"]: n for name, n in nodes.items() if name != me},
            "User": {"1": {"ID": 1, "LoginName": "operator@example.com", "DisplayName": "Operator"}}}


def install_mac_tree(host: str, darwin: bool, peers: dict, offline: tuple = ()) -> None:
    """Lay out a Mac's paths under ``host``'s /opt/saf/macos with the test doubles in place.

    ``peers`` ({name: IPv4}) is the tailnet the Tailscale CLI double reports, ``offline`` the names
    in it that it reports offline (and that do not answer its pings); ``darwin`` marks the
    host so that the facts double reports macOS."""
    sh(host, f"""
        pkill -f '[l]aunchctl __supervise' || true
        rm -rf {MAC}
        mkdir -p {BREW}/bin {MAC}/bin {MAC}/sbin {MAC}/etc/pf.anchors {MAC}/usr/bin {MAC}/usr/sbin {MAC}/Library/LaunchDaemons \
                 {MAC}/doubles {MAC}/Applications/Tailscale.app/Contents/MacOS {MAC}/Users/saf
    """)
    for double, path in {"brew": f"{BREW}/bin/brew", "pyenv": f"{MAC}/doubles/pyenv", "uv": f"{MAC}/doubles/uv",
                         "launchctl": f"{MAC}/bin/launchctl", "pmset": f"{MAC}/usr/bin/pmset",
                         "pfctl": f"{MAC}/sbin/pfctl", "sysctl": f"{MAC}/usr/sbin/sysctl",
                         "tailscale": f"{MAC}/Applications/Tailscale.app/Contents/MacOS/Tailscale"}.items():
        put_file(host, path, (DOUBLES / "bin" / double).read_text(), mode="0755")
    state = {
        f"{BREW}/bin/fake-brew.json": {"installed": {}, "provides": {"pyenv": f"{MAC}/doubles/pyenv",
                                                                    "uv": f"{MAC}/doubles/uv"}},
        # The doubles "build" the lab's own Python by copying its prefix (a pyenv or uv build).
        f"{BREW}/bin/fake-pyenv.json": {"builds": {LAB_PYTHON["version"]: LAB_PYTHON["prefix"]}},
        f"{BREW}/bin/fake-uv.json": {"builds": {LAB_PYTHON["version"]: LAB_PYTHON["prefix"]},
                                     "platform": "macos-aarch64-none"},
        f"{MAC}/Applications/Tailscale.app/Contents/MacOS/fake-tailscale.json": {
            "status": tailscale_status(host, peers, offline)},
    }
    for path, content in state.items():
        write_json(host, path, content)
    # Apple's default pf.conf (macOS 15), loading Apple's own anchors; the anchor file as shipped.
    sh(host, f"""cat > {MAC}/etc/pf.conf <<'PF'
#
# Default PF configuration file.
#
scrub-anchor "com.apple/*"
nat-anchor "com.apple/*"
rdr-anchor "com.apple/*"
dummynet-anchor "com.apple/*"
anchor "com.apple/*"
load anchor "com.apple" from "{MAC}/etc/pf.anchors/com.apple"
PF
cat > {MAC}/etc/pf.anchors/com.apple <<'PF'
#
# com.apple anchor point
#
scrub-anchor "100.InternetSharing/*"
nat-anchor "100.InternetSharing/*"
rdr-anchor "100.InternetSharing/*"
anchor "200.AirDrop/*"
anchor "250.ApplicationFirewall/*"
anchor "300.NetworkLinkConditioner/*"
anchor "400.AirPlay/*"
PF""")
    # Homebrew belongs to an unprivileged account; brew must be run as that account.
    sh(host, f"chown -R nobody:nogroup {BREW}" + (f" && touch {MAC}/FORCE_DARWIN_FACTS" if darwin else ""))


def write_json(host: str, path: str, content: dict) -> None:
    put_file(host, path, json.dumps(content, indent=1))


def remove_mac_tree(host: str) -> None:
    """Stop the launchd double's supervisor and delete ``host``'s /opt/saf/macos."""
    sh(host, f"pkill -f '[l]aunchctl __supervise' || true; rm -rf {MAC}")


def main(argv: list) -> int:
    """``install HOST [--darwin] --peer NAME=IPV4...`` or ``remove HOST``."""
    parser = argparse.ArgumentParser(prog="macos_doubles.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="lay out the doubles on a lab host")
    install.add_argument("host")
    install.add_argument("--darwin", action="store_true", help="make the host report macOS facts")
    install.add_argument("--peer", action="append", default=[], metavar="NAME=IPV4",
                         help="a tailnet node the Tailscale double lists (give the host itself too)")
    install.add_argument("--offline", action="append", default=[], metavar="NAME",
                         help="a tailnet node the Tailscale double reports offline")
    remove = commands.add_parser("remove", help="delete the doubles from a lab host")
    remove.add_argument("host")
    args = parser.parse_args(argv)
    if args.command == "remove":
        remove_mac_tree(args.host)
        return 0
    peers = dict(peer.split("=", 1) for peer in args.peer)
    if args.host not in peers:
        parser.error(f"--peer {args.host}=IPV4 is missing: the Tailscale double needs the host's own node")
    install_mac_tree(args.host, args.darwin, peers, tuple(args.offline))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
