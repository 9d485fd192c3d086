"""TEST DOUBLES: a Mac's fixed paths laid out under a lab host's private /opt/saf/macos.

The doubles of ``tests/doubles/bin`` (brew, pyenv, uv, launchctl, pmset, pfctl, sysctl,
socketfilterfw, fdesetup, defaults, the Tailscale CLI) go where ``tests/lab/macos/overrides.yml`` points the roles,
with the state files they read; a marked host (``/opt/saf/macos/FORCE_DARWIN_FACTS``) reports macOS
facts through ``tests/doubles/modules/saf_test_darwin_facts.py``. Used by ``tests/lab/test_4_macos.py``
(whose last tests restart a "Mac") and, as a command, by the molecule scenarios of the macOS-only roles::

    python3 tests/lab/macos_doubles.py install DELTA --darwin --peer DELTA=198.18.0.14 --peer EPSILON=198.18.0.15
    python3 tests/lab/macos_doubles.py remove DELTA

``reboot_mac`` restarts such a "Mac" as far as the doubles go (what a restart stops, forgets and
starts again), ``simulate_macos_update`` does to it what a macOS update does to /etc/pf.conf.
"""

from __future__ import annotations

import argparse
import json
import plistlib
import shlex
import sys
import time

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
                 {MAC}/doubles {MAC}/Applications/Tailscale.app/Contents/MacOS {MAC}/Users/saf \
                 {MAC}/usr/libexec/ApplicationFirewall {MAC}/Library/Preferences {MAC}/System/Library/LaunchDaemons \
                 {MAC}/var/run {MAC}/var/log
    """)
    for double, path in {"brew": f"{BREW}/bin/brew", "pyenv": f"{MAC}/doubles/pyenv", "uv": f"{MAC}/doubles/uv",
                         "launchctl": f"{MAC}/bin/launchctl", "pmset": f"{MAC}/usr/bin/pmset",
                         "pfctl": f"{MAC}/sbin/pfctl", "sysctl": f"{MAC}/usr/sbin/sysctl",
                         "socketfilterfw": f"{MAC}/usr/libexec/ApplicationFirewall/socketfilterfw",
                         "fdesetup": f"{MAC}/usr/bin/fdesetup", "defaults": f"{MAC}/usr/bin/defaults",
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
        # A Mac as a new one comes: the Application Firewall off, FileVault off.
        f"{MAC}/usr/libexec/ApplicationFirewall/fake-socketfilterfw.json": {"enabled": False, "blockall": False,
                                                                            "apps": []},
        f"{MAC}/usr/bin/fake-fdesetup.json": {"status": "off"},
    }
    for path, content in state.items():
        write_json(host, path, content)
    # Software Update as an admin set it for the cluster: checks and downloads, installs nothing by itself.
    put_file(host, f"{MAC}/Library/Preferences/com.apple.SoftwareUpdate.plist", plistlib.dumps({
        "AutomaticCheckEnabled": True, "AutomaticDownload": True, "AutomaticallyInstallMacOSUpdates": False,
        "CriticalUpdateInstall": True}).decode())
    # Apple's boot job for pf: loads /etc/pf.conf, does not enable pf (reboot_mac starts it).
    put_file(host, f"{MAC}/System/Library/LaunchDaemons/com.apple.pfctl.plist", plistlib.dumps({
        "Label": "com.apple.pfctl", "ProgramArguments": [f"{MAC}/sbin/pfctl", "-f", f"{MAC}/etc/pf.conf"],
        "RunAtLoad": True}).decode())
    # Apple's default pf.conf (macOS 15), loading Apple's own anchors; the anchor file as shipped.
    put_file(host, f"{MAC}/etc/pf.conf", apple_pf_conf())
    sh(host, f"""cat > {MAC}/etc/pf.anchors/com.apple <<'PF'
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


def apple_pf_conf() -> str:
    """Apple's default /etc/pf.conf (macOS 15), its anchor file re-rooted under the Mac tree."""
    return f"""#
# Default PF configuration file.
#
scrub-anchor "com.apple/*"
nat-anchor "com.apple/*"
rdr-anchor "com.apple/*"
dummynet-anchor "com.apple/*"
anchor "com.apple/*"
load anchor "com.apple" from "{MAC}/etc/pf.anchors/com.apple"
"""


def write_json(host: str, path: str, content: dict) -> None:
    put_file(host, path, json.dumps(content, indent=1))


def simulate_macos_update(host: str) -> None:
    """What a macOS update does to pf's configuration: Apple's default /etc/pf.conf replaces the one
    site.yml added SAF's lines to (tuist/tuist#11425). The restart it ends with is ``reboot_mac``."""
    put_file(host, f"{MAC}/etc/pf.conf", apple_pf_conf())


def stop_everything(host: str, timeout: float = 30) -> None:
    """A power cut, as far as the Mac tree goes: the launchd double's supervisors and every process run
    from /opt/saf (Ray's, by their executables; Ray renames its workers ``ray::...``) are killed."""
    sh(host, f"""
        pkill -KILL -f '[l]aunchctl __supervise' || true
        end=$(( $(date +%s) + {int(timeout)} ))
        while :; do
          pids=$(for p in /proc/[0-9]*; do
                   case "$(readlink "$p/exe" 2>/dev/null)" in /opt/saf/*) echo "${{p#/proc/}}";; esac
                 done; pgrep -f '^ray::|[/]opt/saf/venv' || true; pgrep -x raylet || true; pgrep -x gcs_server || true)
          [ -z "$pids" ] && break
          [ "$(date +%s)" -lt "$end" ] || {{ echo "still running: $pids" >&2; exit 1; }}
          kill -KILL $pids 2>/dev/null || true
          sleep 0.2
        done
    """, timeout=timeout + 30)


def reboot_mac(host: str) -> list:
    """Restart the "Mac" ``host`` as far as its doubles go; returns the labels launchd (the double)
    started, in the order it was asked to.

    A restart stops every process (``stop_everything``); pf comes up disabled with nothing loaded
    (``pfctl __boot``); launchd forgets the jobs it had loaded (the double's job states; its record of
    disabled labels stays, as launchd's does); the ready file of SAF's pf script names the previous
    boot, which a real restart changes (kern.boottime) and the lab's cannot, so it goes. Then, as
    launchd does at boot, every job in /System/Library/LaunchDaemons and /Library/LaunchDaemons with
    RunAtLoad is loaded: Apple's com.apple.pfctl, SAF's pf job, Ray's. launchd promises no order
    among them; here it is the directories' order, then the names'."""
    stop_everything(host)
    sh(host, f"""
        {MAC}/sbin/pfctl __boot
        rm -f {MAC}/bin/fake-launchctl/*.json {MAC}/var/run/*
    """)
    started = []
    for directory in (f"{MAC}/System/Library/LaunchDaemons", f"{MAC}/Library/LaunchDaemons"):
        for name in sorted(sh(host, f"ls {shlex.quote(directory)}").split()):
            if not name.endswith(".plist"):
                continue
            path = f"{directory}/{name}"
            job = plistlib.loads(sh(host, f"cat {shlex.quote(path)}").encode())
            if job.get("RunAtLoad") or job.get("KeepAlive") is True:
                sh(host, f"{MAC}/bin/launchctl bootstrap system {shlex.quote(path)}")
                started.append(job["Label"])
    return started


def wait_until(what: str, check, timeout: float, interval: float = 1.0):
    """Call ``check`` until it returns something true, at most ``timeout`` seconds; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)


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
