"""pf comes back by itself (issue 17, rows a and b): the pfctl double (tests/doubles/bin/pfctl) models
what a restart and a macOS update do to pf, and cluster_firewall's macOS tasks, run for real over a
local connection against the doubles, leave a Mac whose pf a restart cannot leave open.

* A Mac boots with pf disabled: Apple's boot job (com.apple.pfctl) loads /etc/pf.conf but does
  not enable pf (SelfControlApp/selfcontrol#815, Homebrew/legacy-homebrew#42599). SAF's own
  LaunchDaemon (org.saf.pf) runs ``saf-pf load``: the anchor from SAF's file, pf enabled.
* An update puts Apple's /etc/pf.conf back, without site.yml's lines (tuist/tuist#11425): SAF's
  rules are in com.apple/org.saf.ray, which Apple's own ``anchor "com.apple/*"`` evaluates.
* Ray's job starts through ``saf-pf exec``: not before pf is enabled with SAF's rules in this boot
  (as root read from pf; as another account from the ready file root wrote in this boot).

One Mac per scenario (tests/unit/mac_harness.py), three playbook runs for all of them, in the
module fixture; the tests read what the fixture recorded, so their order does not matter. Without
root these tests skip (the doubles, like pfctl and launchctl, change state only as root).
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import subprocess
import sys
import time

import pytest

from mac_harness import ANCHOR, NOBODY, SETPRIV, Macs, as_nobody, needs_root

pytestmark = needs_root
SETUP = [("cluster_firewall", "main")]
VERIFY = [("cluster_firewall", "verify.yml")]
REMOVE = [("cluster_firewall", "remove.yml")]
BLOCK = "block drop in quick"


def launchctl(mac, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(mac.bin / "launchctl"), *args], capture_output=True, text=True, timeout=30)


def gate(mac, *argv, user=None) -> subprocess.CompletedProcess:
    command = [str(mac.script), *argv]
    if user == "nobody":
        return as_nobody(*command)
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def macs():
    """MINI: set up, restarted, updated and restarted, verified and set up again, then set up once
    more (idempotence); BROKEN: set up, then its pf off and its boot job gone and disabled, verified;
    RESET: set up, reset, reset again; GATE and JOB: set up, for Ray's gate. Three playbook runs in
    all; everything the tests read is recorded on the way."""
    macs = Macs(["BROKEN", "GATE", "JOB", "MINI", "RESET"])
    mini, broken, reset = macs["MINI"], macs["BROKEN"], macs["RESET"]
    record = {}
    try:
        # launchd keeps org.saf.pf disabled ("Allow in the Background" off): site.yml enables it.
        assert launchctl(mini, "disable", "system/org.saf.pf").returncode == 0
        for mac in macs.values():
            mac.vars["saf_pf_wait_seconds"] = 2  # the gate's bound, short for the tests
        first = macs.run({name: SETUP for name in macs})
        record["first"] = first
        record["after_setup"] = dict(
            enabled=mini.enabled(), anchor=mini.rules(ANCHOR), conf=mini.pf_conf.read_text(),
            job=plistlib.loads((mini.daemons / "org.saf.pf.plist").read_bytes()),
            script=(mini.script.stat().st_uid, mini.script.stat().st_mode & 0o777),
            disabled=launchctl(mini, "print-disabled", "system").stdout)

        mini.boot()
        record["after_restart"] = dict(enabled=mini.enabled(), main=mini.rules(), anchor=mini.rules(ANCHOR),
                                       ready=mini.ready.read_text())
        mini.boot(update=True)
        record["after_update"] = dict(enabled=mini.enabled(), main=mini.rules(), anchor=mini.rules(ANCHOR),
                                      old_anchor=mini.rules("org.saf.ray"), conf=mini.pf_conf.read_text())

        broken.pf("-d")
        (broken.daemons / "org.saf.pf.plist").unlink()
        launchctl(broken, "disable", "system/org.saf.pf")
        record["second"] = macs.run({"MINI": VERIFY + SETUP, "BROKEN": VERIFY, "RESET": REMOVE})
        record["after_second"] = dict(conf=mini.pf_conf.read_text())
        record["after_reset"] = dict(
            files=[path.exists() for path in (reset.daemons / "org.saf.pf.plist", reset.script, reset.ready)],
            anchor=reset.rules(ANCHOR), old_anchor=reset.rules("org.saf.ray"), conf=reset.pf_conf.read_text())
        record["third"] = macs.run({"MINI": SETUP, "RESET": REMOVE})
        yield macs, record
    finally:
        macs.remove()


# --- the double -----------------------------------------------------------------------------------

def test_the_double_boots_with_pf_disabled_and_nothing_loaded(tmp_path):
    from mac_harness import Mac
    mac = Mac(tmp_path / "mac", "HEAD", "198.18.0.11")
    assert mac.pf("-f", str(mac.pf_conf)).returncode == 0
    enabled = mac.pf("-E")
    assert enabled.returncode == 0 and re.search(r"^Token : \d+$", enabled.stderr, re.M), enabled.stderr
    assert mac.enabled() and 'anchor "com.apple/*"' in mac.rules()

    assert mac.pf("__boot").returncode == 0
    assert mac.pf("-s", "info").stdout == "Status: Disabled\n"
    assert mac.rules() == [] and mac.rules("com.apple") == []
    # Apple's boot job loads pf.conf and leaves pf disabled.
    assert mac.pf("-f", str(mac.pf_conf)).returncode == 0
    assert not mac.enabled() and 'anchor "com.apple/*"' in mac.rules()

    # -d disables pf and drops every reference -E took; a second -d says pf is not enabled.
    mac.pf("-E")
    mac.pf("-E")
    disabled = mac.pf("-d")
    assert (disabled.returncode, disabled.stderr) == (0, "pf disabled\n")
    assert json.loads((mac.bin / "fake-pfctl.json").read_text())["references"] == []
    again = mac.pf("-d")
    assert (again.returncode, again.stderr) == (1, "pfctl: pf not enabled\n")


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) runs the double as another user")
def test_only_root_reads_pf_as_on_macos():
    """/dev/pf is root's alone: Ray's job (another account) cannot read pf, only the ready file."""
    macs = Macs(["HEAD"])  # in a directory nobody can reach (pytest's tmp_path is root's alone)
    try:
        for args in (["-s", "info"], ["-s", "rules"], ["-E"]):
            denied = as_nobody(str(macs["HEAD"].pfctl), *args)
            assert (denied.returncode, denied.stderr) == (1, "pfctl: /dev/pf: Permission denied\n"), args
    finally:
        macs.remove()


# --- rows (a) and (b): the boot job, from SAF's own files -----------------------------------------

def test_site_installs_the_boot_job_and_enables_it_in_launchd(macs):
    macs, record = macs
    first, state = record["first"], record["after_setup"]
    assert first.returncode == 0, first
    assert "changed: [MINI]" in first.output and state["enabled"] and any(BLOCK in rule for rule in state["anchor"]), state
    job = state["job"]
    assert job["Label"] == "org.saf.pf" and job["ProgramArguments"] == [str(macs["MINI"].script), "load"]
    assert job["RunAtLoad"] is True and job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["StandardErrorPath"] == str(macs["MINI"].log)
    assert state["script"] == (0, 0o755)
    assert 'anchor "org.saf.ray"' in state["conf"]
    # The label was disabled before the run: site.yml enabled it, and said so.
    assert "org.saf.pf" not in state["disabled"]
    assert re.search(r"TASK \[cluster_firewall : Let launchd run the pf job at boot\] \*+\n(\S+: \[\w+\].*\n)*"
                     r"changed: \[MINI\]", first.output), first


def test_pf_comes_back_enabled_with_safs_rules_after_a_restart(macs):
    _, record = macs
    state = record["after_restart"]
    assert state["enabled"], "SAF's boot job enabled pf"
    assert 'anchor "com.apple/*"' in state["main"] and any(BLOCK in r for r in state["anchor"]), state
    assert state["ready"].startswith("boot ")


def test_pf_comes_back_after_an_update_put_apples_pf_conf_back(macs):
    _, record = macs
    state = record["after_update"]
    assert "org.saf.ray" not in state["conf"] and state["old_anchor"] == []
    assert state["enabled"]
    assert state["main"] == [line for line in state["conf"].splitlines()
                             if line and not line.startswith(("#", "load"))], "Apple's main ruleset"
    assert any(BLOCK in r for r in state["anchor"]), "evaluated through anchor com.apple/*"


def test_verify_passes_after_the_update_and_site_puts_the_lines_back_changing_nothing_else(macs):
    _, record = macs
    second = record["second"]
    assert not second.failed("MINI"), second
    assert second.said("MINI: pf is enabled with SAF's rules (anchor com.apple/org.saf.ray) in this boot, "
                       "and org.saf.pf loads them again at every boot."), second
    assert 'anchor "org.saf.ray"' in record["after_second"]["conf"]
    assert second.changed("MINI") == 2, "pf.conf's lines and loading pf.conf, nothing else:\n" + str(second)
    third = record["third"]
    assert not third.failed("MINI") and third.changed("MINI") == 0, third


def test_verify_names_each_thing_that_leaves_rays_ports_open(macs):
    macs, record = macs
    second = record["second"]
    message = second.fatal("BROKEN")
    script, daemons = macs["BROKEN"].script, macs["BROKEN"].daemons
    assert "BROKEN: Ray's ports are not closed to outsiders as wanted: pf is disabled" in message.replace("''", "'"), second
    assert f"`sudo {script} load` fixes it now" in message, second
    assert f"no org.saf.pf LaunchDaemon in {daemons}: pf stays disabled after a restart" in message, second
    assert "launchd keeps org.saf.pf disabled (Login Items › Allow in the Background)" in message, second


def test_reset_removes_the_boot_job_and_safs_rules_and_runs_twice(macs):
    _, record = macs
    assert not record["second"].failed("RESET"), record["second"]
    state = record["after_reset"]
    assert state["files"] == [False, False, False]
    assert state["anchor"] == [] and state["old_anchor"] == [] and "org.saf.ray" not in state["conf"]
    again = record["third"]
    assert not again.failed("RESET") and again.changed("RESET") == 0, again


# --- Ray's gate -----------------------------------------------------------------------------------

def test_rays_job_waits_for_pf_as_root(macs):
    macs, _ = macs
    mac = macs["GATE"]
    assert gate(mac, "load").returncode == 0
    started = gate(mac, "exec", "echo", "ray started")
    assert (started.returncode, started.stdout) == (0, "ray started\n"), started.stderr

    mac.pf("-d")
    began = time.monotonic()
    refused = gate(mac, "exec", "echo", "ray started")
    assert refused.returncode == 75 and refused.stdout == "", refused
    assert "not starting echo: pf is disabled (2 s waited; launchd tries again)" in refused.stderr
    assert 2 <= time.monotonic() - began < 20
    mac.pf("-a", ANCHOR, "-F", "all")
    mac.pf("-E")
    assert "the anchor com.apple/org.saf.ray holds no rules" in gate(mac, "check").stderr


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) runs the gate as another user")
def test_rays_job_as_another_account_trusts_only_roots_ready_file_of_this_boot(macs):
    macs, _ = macs
    mac = macs["GATE"]
    assert gate(mac, "load").returncode == 0
    assert gate(mac, "exec", "echo", "ray started", user="nobody").stdout == "ray started\n"
    mac.ready.unlink()
    refused = gate(mac, "exec", "echo", "ray started", user="nobody")
    assert refused.returncode == 75 and f"no {mac.ready}" in refused.stderr, refused
    mac.ready.write_text("boot an earlier one\n")
    assert "from an earlier boot" in gate(mac, "check", user="nobody").stderr
    os.chown(mac.ready, NOBODY, NOBODY)
    assert "is not owned by root" in gate(mac, "check", user="nobody").stderr
    assert gate(mac, "load").returncode == 0 and gate(mac, "check", user="nobody").returncode == 0


def command(status: str) -> str:
    """The command line of the job's process that ``launchctl print`` names, "" when there is none."""
    pid = re.search(r"pid = (\d+)", status)
    try:
        return open(f"/proc/{pid.group(1)}/cmdline").read().replace("\0", " ") if pid else ""
    except OSError:
        return ""


def test_launchd_starts_rays_job_only_once_pf_is_ready(macs):
    """Ray's LaunchDaemon as ray_node writes it on a Mac ([saf-pf, exec, ray, start, ...], KeepAlive),
    under the launchctl double: with pf disabled the job exits 75 and launchd tries again; once the
    boot job has loaded SAF's rules it runs."""
    macs, _ = macs
    mac = macs["JOB"]
    ray = mac.root / "ray"
    ray.write_text("#!/bin/sh\nexec sleep 60\n")
    ray.chmod(0o755)
    plist = mac.daemons / "org.saf.ray.plist"
    plist.write_bytes(plistlib.dumps({"Label": "org.saf.ray", "ProgramArguments": [str(mac.script), "exec", str(ray), "start"],
                                      "RunAtLoad": True, "KeepAlive": True, "ThrottleInterval": 1, "ExitTimeOut": 2}))
    mac.pf("-d")
    try:
        assert launchctl(mac, "bootstrap", "system", str(plist)).returncode == 0
        deadline = time.monotonic() + 20
        while "last exit code = 75" not in launchctl(mac, "print", "system/org.saf.ray").stdout:
            assert time.monotonic() < deadline, launchctl(mac, "print", "system/org.saf.ray").stdout
            time.sleep(0.2)
        assert gate(mac, "load").returncode == 0
        deadline = time.monotonic() + 20
        while True:
            status = launchctl(mac, "print", "system/org.saf.ray").stdout
            if "state = running" in status and command(status).startswith("sleep"):
                break  # the gate exec'd Ray's program
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        launchctl(mac, "bootout", "system/org.saf.ray")
