"""TEST HARNESS: several "Macs" on the controller, each a directory with its own copies of the macOS
test doubles (tests/doubles/bin), driven by one ``ansible-playbook`` run for all of them.

A playbook run costs seconds; a double's state costs nothing. So each test module lays out one Mac
per scenario (``Mac``), gives each its own task files (``macos_steps``, a host variable read by
tests/unit/playbooks/macos_steps.yml), and ``run`` plays them all at once over a local connection,
with a facts double (tests/unit/playbooks/library/saf_test_os_facts.py) reporting Darwin. The tests
then read each host's part of the output (``fatal``, ``said``, ``changed``) and each Mac's doubles.

Each Mac's doubles keep their state next to their copies (the doubles' default), so the Macs share
nothing. A Mac lives in a directory every user can read: SAF's pf gate is also run as ``nobody``.
The doubles, like pfctl, launchctl and socketfilterfw, change state only as root: the modules
using this harness skip without root.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from test_doubles_launchctl import kill_jobs

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / "tests" / "doubles" / "bin"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "macos_steps.yml"
LIBRARY = REPO / "tests" / "unit" / "playbooks" / "library"
SETPRIV = shutil.which("setpriv")
NOBODY = 65534
ANCHOR = "com.apple/org.saf.ray"

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the doubles, like pfctl, launchctl and socketfilterfw, change state only as root")


def tailnet_status(me: str, nodes: dict) -> dict:
    """``tailscale status --json`` for ``me`` in a tailnet of ``nodes`` ({name: IPv4}), all online."""
    def node(index, name, ip):
        return {"ID": f"n{index}", "PublicKey": f"nodekey:{index:064x}", "HostName": name,
                "DNSName": f"{name.lower()}.tailnet-0000.ts.net.", "OS": "macOS", "UserID": 1,
                "TailscaleIPs": [ip, f"fd7a:115c:a1e0::{index}"], "Online": True, "Active": True,
                "CurAddr": f"{ip}:41641", "Relay": "fra"}
    every = {name: node(i + 1, name, ip) for i, (name, ip) in enumerate(sorted(nodes.items()))}
    return {"Version": "1.86.2-t0000", "BackendState": "Running", "TailscaleIPs": every[me]["TailscaleIPs"],
            "Self": every[me], "MagicDNSSuffix": "tailnet-0000.ts.net",
            "Peer": {n["PublicKey"]: n for name, n in every.items() if name != me},
            "User": {"1": {"ID": 1, "LoginName": "operator@example.com", "DisplayName": "Operator"}}}


class Mac:
    """A Mac's fixed paths under ``root``, with copies of the doubles SAF's macOS task files call."""

    def __init__(self, root: Path, name: str, ip: str):
        self.root, self.name, self.ip = root, name, ip
        root.mkdir(mode=0o755)
        self.bin = root / "bin"
        self.bin.mkdir()
        for double in ("pfctl", "launchctl", "socketfilterfw", "fdesetup", "defaults", "pmset", "tailscale"):
            shutil.copy2(DOUBLES / double, self.bin / double)
        self.pfctl = self.bin / "pfctl"
        self.etc = root / "etc"
        (self.etc / "pf.anchors").mkdir(parents=True)
        (self.etc / "pf.anchors" / "com.apple").write_text(
            '#\n# com.apple anchor point\n#\nanchor "200.AirDrop/*"\nanchor "250.ApplicationFirewall/*"\n')
        self.pf_conf = self.etc / "pf.conf"
        self.apple_pf_conf()
        self.daemons = root / "Library" / "LaunchDaemons"
        self.daemons.mkdir(parents=True)
        self.preferences = root / "Library" / "Preferences"
        self.preferences.mkdir(parents=True)
        self.script = root / "Library" / "Application Support" / "SAF" / "saf-pf"
        self.ready = root / "var" / "run" / "org.saf.pf.ready"
        self.log = root / "var" / "log" / "org.saf.pf.log"
        self.saf = root / "saf"
        self.venv = self.saf / "venv"
        self.vars: dict = {}

    # --- the Mac's own state ----------------------------------------------------------------------

    def apple_pf_conf(self) -> None:
        """Apple's default /etc/pf.conf (macOS 15), as a new Mac has it and an update puts it back."""
        self.pf_conf.write_text(
            '#\n# Default PF configuration file.\n#\nscrub-anchor "com.apple/*"\nnat-anchor "com.apple/*"\n'
            'rdr-anchor "com.apple/*"\ndummynet-anchor "com.apple/*"\nanchor "com.apple/*"\n'
            f'load anchor "com.apple" from "{self.etc / "pf.anchors" / "com.apple"}"\n')

    def pf(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(self.pfctl), *args], capture_output=True, text=True, timeout=30)

    def enabled(self) -> bool:
        return self.pf("-s", "info").stdout.strip() == "Status: Enabled"

    def rules(self, anchor=None) -> list:
        return self.pf(*(["-a", anchor] if anchor else []), "-s", "rules").stdout.splitlines()

    def boot(self, update: bool = False) -> None:
        """A restart (after an update, when ``update``), and what launchd then starts: pf disabled and
        empty; Apple's boot job (``pfctl -f /etc/pf.conf``), then SAF's (its plist's ProgramArguments)."""
        if update:
            self.apple_pf_conf()
        assert self.pf("__boot").returncode == 0
        self.ready.unlink(missing_ok=True)  # it names the previous boot, which a real restart changes
        assert not self.enabled() and self.rules() == [] and self.rules(ANCHOR) == []
        assert self.pf("-f", str(self.pf_conf)).returncode == 0  # com.apple.pfctl: loads, does not enable
        assert not self.enabled()
        job = plistlib.loads((self.daemons / "org.saf.pf.plist").read_bytes())
        assert job["RunAtLoad"] is True
        done = subprocess.run(job["ProgramArguments"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def make_venv(self, name: str = "v1") -> Path:
        """A venv (no pip) with a stand-in Ray package holding gcs_server and raylet; saf/venv links to it."""
        venv = self.saf / "venvs" / name
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        site = next(venv.glob("lib/python3*/site-packages"))
        core = site / "ray" / "core" / "src" / "ray"
        for program in ("gcs/gcs_server", "raylet/raylet"):
            (core / program).parent.mkdir(parents=True, exist_ok=True)
            (core / program).write_text("#!/bin/sh\n")
            (core / program).chmod(0o755)
        (site / "ray" / "__init__.py").write_text("")
        self.venv.unlink(missing_ok=True)
        self.venv.symlink_to(venv)
        return venv

    def programs(self) -> list:
        """The real paths of the venv's Python and of its Ray's gcs_server and raylet."""
        venv = self.venv.resolve()
        core = next(venv.glob("lib/python3*/site-packages")) / "ray" / "core" / "src" / "ray"
        return [os.path.realpath(venv / "bin" / "python"), str(core / "gcs" / "gcs_server"),
                str(core / "raylet" / "raylet")]

    def alf(self, **state) -> None:
        (self.bin / "fake-socketfilterfw.json").write_text(json.dumps(state))

    def alf_apps(self) -> dict:
        state = json.loads((self.bin / "fake-socketfilterfw.json").read_text())
        return {app["path"]: app["allow"] for app in state.get("apps", [])}

    def filevault(self, status: str, **extra) -> None:
        (self.bin / "fake-fdesetup.json").write_text(json.dumps({"status": status, **extra}))

    def software_update(self, **values) -> str:
        """Software Update's preferences file; returns the domain `defaults` takes (the path, no .plist)."""
        (self.preferences / "com.apple.SoftwareUpdate.plist").write_bytes(plistlib.dumps(values, fmt=plistlib.FMT_BINARY))
        return str(self.preferences / "com.apple.SoftwareUpdate")

    def tailnet(self, nodes: dict) -> None:
        (self.bin / "fake-tailscale.json").write_text(json.dumps({"status": tailnet_status(self.name, nodes)}))

    # --- SAF's task files -------------------------------------------------------------------------

    def hostvars(self) -> dict:
        return {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "saf_node_ip": self.ip, "saf_root_dir": str(self.saf), "saf_venv_dir": str(self.venv),
            "saf_ray_temp_dir": str(self.saf / "ray"), "saf_ray_user": "root",
            "cluster_firewall_pfctl": str(self.pfctl), "cluster_firewall_pf_conf": str(self.pf_conf),
            "cluster_firewall_pf_anchor_file": str(self.etc / "pf.anchors" / "org.saf.ray"),
            "saf_pf_script": str(self.script), "saf_pf_ready_file": str(self.ready), "saf_pf_log": str(self.log),
            "saf_launchd_dir": str(self.daemons), "saf_launchctl": str(self.bin / "launchctl"),
            "saf_socketfilterfw": str(self.bin / "socketfilterfw"),
            "power_settings_pmset": str(self.bin / "pmset"), "power_settings_fdesetup": str(self.bin / "fdesetup"),
            "power_settings_defaults": str(self.bin / "defaults"),
            "power_settings_softwareupdate_domain": str(self.preferences / "com.apple.SoftwareUpdate"),
            "saf_tailscale_app_cli": str(self.bin / "tailscale"), "saf_tailscale_homebrew_prefixes": [],
            "saf_tailscale_check": False, **self.vars,
        }

    def kill_jobs(self) -> None:
        kill_jobs(self.bin)


class Run:
    """One ansible-playbook run over several Macs: its exit status and output, read per host."""

    def __init__(self, returncode: int, output: str):
        self.returncode, self.output = returncode, output
        self.flat = " ".join(output.replace("''", "'").split())  # YAML doubles a quote inside quotes

    def fatal(self, host: str) -> str:
        """``host``'s fatal message(s), on one line."""
        found = re.findall(rf"^fatal: \[{re.escape(host)}\]: .*?(?=^\S|\Z)", self.output, re.M | re.S)
        return " ".join(" ".join(found).split())

    def failed(self, host: str) -> bool:
        return int(re.search(rf"^{re.escape(host)}\s*:.*\bfailed=(\d+)", self.output, re.M).group(1)) > 0

    def changed(self, host: str) -> int:
        return int(re.search(rf"^{re.escape(host)}\s*:\s*ok=\d+\s+changed=(\d+)", self.output, re.M).group(1))

    def said(self, text: str) -> bool:
        """Whether the output says ``text`` (messages wrap: white space is compared as one space)."""
        return " ".join(text.split()) in self.flat

    def __str__(self):
        return self.output


def run(workdir: Path, macs: dict, steps: dict, **extra) -> Run:
    """Play ``steps`` ({host: [(role, task file)]}) on the Macs named, all in one run. Every Mac is in
    the inventory (the firewall's sources are every node's address), the others with no steps."""
    hosts = {}
    for name, mac in macs.items():
        hosts[name] = {**mac.hostvars(),
                       "macos_steps": [{"role": role, "tasks": file} for role, file in steps.get(name, [])]}
    names = sorted(hosts)
    inventory = {"saf_cluster": {"children": {"ray_head": {"hosts": {names[0]: hosts[names[0]]}},
                                              "ray_workers": {"hosts": {n: hosts[n] for n in names[1:]}}}}}
    (workdir / "inventory.yml").write_text(yaml.safe_dump(inventory))
    variables = {"ansible_facts_modules": ["ansible.builtin.setup", "saf_test_os_facts"],
                 "ansible_facts_parallel": False, **extra}
    (workdir / "extra.yml").write_text(yaml.safe_dump(variables))
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", SAF_TEST_OS="Darwin",
               ANSIBLE_LIBRARY=f"{REPO / 'library'}{os.pathsep}{LIBRARY}")
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(workdir / "inventory.yml"),
                           "-e", f"@{workdir / 'extra.yml'}", str(PLAYBOOK)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False, env=env)
    return Run(proc.returncode, proc.stdout + proc.stderr)


class Macs(dict):
    """The Macs of one test module, by name, in one directory every user can read."""

    def __init__(self, names: list, base: int = 11):
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="saf-macs-"))
        self.workdir.chmod(0o755)
        for index, name in enumerate(names):
            self[name] = Mac(self.workdir / name, name, f"198.18.0.{base + index}")

    def run(self, steps: dict, **extra) -> Run:
        return run(self.workdir, self, steps, **extra)

    def remove(self) -> None:
        for mac in self.values():
            mac.kill_jobs()
        shutil.rmtree(self.workdir, ignore_errors=True)


def as_nobody(*argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH="/usr/local/bin:/usr/bin:/bin")
    return subprocess.run([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60, env=env)


# --- one run for rows (d), (e) and (f): power_settings and tailscale_network on one Mac each ---------

POWER = [("power_settings", "main")]
NETWORK = [("tailscale_network", "main")]
#: FileVault (fdesetup double) per Mac, and whether it accepts unlocking by hand.
FILEVAULT = {"FV_OFF": ("off", False), "FV_ON": ("on", False), "FV_NEXT": ("next-restart", False),
             "FV_ACCEPT": ("on", True)}
#: Software Update's preferences per Mac (defaults double).
UPDATES = {"UP_AUTO": {"AutomaticCheckEnabled": True, "AutomaticallyInstallMacOSUpdates": True},
           "UP_UNSET": {}, "UP_OFF": {"AutomaticCheckEnabled": True, "AutomaticallyInstallMacOSUpdates": False}}
#: The tailscaled LaunchDaemon per Mac (None: only the Tailscale app).
TAILSCALE = {"TS_APP": None, "TS_DAEMON": "com.tailscale.tailscaled.plist", "TS_BREW": "homebrew.mxcl.tailscale.plist"}


@functools.lru_cache(maxsize=None)
def unattended_run():
    """(macs, run): power_settings on the FileVault and Software Update Macs, tailscale_network on
    the Tailscale Macs, in one playbook run shared by test_doubles_fdesetup.py,
    test_doubles_softwareupdate.py and test_doubles_tailscale_variant.py. Removed at exit."""
    macs = Macs(sorted([*FILEVAULT, *UPDATES, *TAILSCALE]))
    atexit.register(macs.remove)
    for name, (status, accept) in FILEVAULT.items():
        macs[name].filevault(status)
        macs[name].vars["power_settings_accept_manual_unlock"] = accept
        macs[name].software_update(AutomaticallyInstallMacOSUpdates=False)
    for name, values in UPDATES.items():
        macs[name].software_update(**values)
    addresses = {name: mac.ip for name, mac in macs.items()}
    for name, plist in TAILSCALE.items():
        mac = macs[name]
        mac.tailnet(addresses)
        mac.vars["saf_tailscale_check"] = True
        if plist:
            (mac.daemons / plist).write_bytes(plistlib.dumps(
                {"Label": plist.removesuffix(".plist"), "ProgramArguments": ["/usr/local/bin/tailscaled"], "RunAtLoad": True}))
    steps = {**{name: POWER for name in [*FILEVAULT, *UPDATES]}, **{name: NETWORK for name in TAILSCALE}}
    return macs, macs.run(steps)
