"""FileVault (issue 17, row d): the fdesetup double (tests/doubles/bin/fdesetup) prints what
``fdesetup status`` prints, and power_settings, run over a local connection against the doubles,
stops on a Mac whose restart would wait at the FileVault unlock screen unless unlocking it by hand
is accepted, naming the host and both choices.

A FileVault Mac that restarts unattended (a power cut with autorestart, an update) stays at the
unlock screen, with no network and no Ray, until someone types a password at it
(omniaura/omniclaw#751, macadmins/outset#71). The playbook run is shared with the other
unattended-restart tests (tests/unit/mac_harness.py ``unattended_run``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mac_harness import Mac, needs_root, unattended_run

pytestmark = needs_root


def fdesetup(mac, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(mac.bin / "fdesetup"), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("status, printed, active", [
    ("off", "FileVault is Off.\n", False),
    ("on", "FileVault is On.\n", True),
    ("encrypting", "FileVault is On.\nEncryption in progress: Percent completed = 12\n", True),
    ("deferred", "FileVault is Off.\nDeferred enablement appears to be active for user 'saf'.\n", False),
    ("next-restart", "FileVault is Off, but will be enabled after the next restart.\n", False),
])
def test_the_double_prints_what_fdesetup_prints(tmp_path, status, printed, active):
    mac = Mac(tmp_path / "mac", "HEAD", "198.18.0.11")
    mac.filevault(status, percent=12)
    assert fdesetup(mac, "status").stdout == printed
    done = fdesetup(mac, "isactive")
    assert (done.returncode, done.stdout) == ((0, "true\n") if active else (1, "false\n"))
    assert fdesetup(mac, "disable").returncode == 2


def test_a_mac_without_filevault_passes():
    _, run = unattended_run()
    assert not run.failed("FV_OFF"), run
    assert not run.said("FV_OFF: FileVault is on"), run


@pytest.mark.parametrize("host", ["FV_ON", "FV_NEXT"])
def test_filevault_fails_naming_the_host_and_both_choices(host):
    macs, run = unattended_run()
    message = run.fatal(host)
    assert f"{host}: FileVault is on" in message, run
    assert "this Mac waits at the FileVault unlock screen" in message
    assert "turn FileVault off on this Mac" in message and "`sudo fdesetup disable`" in message
    assert "power_settings_accept_manual_unlock: true in its host_vars" in message
    # It stopped before changing anything: pmset never ran as root on it.
    assert not (macs[host].bin / "fake-pmset.json").exists() or "sleep" not in json.loads(
        (macs[host].bin / "fake-pmset.json").read_text()).get("ac", {})


def test_accepting_manual_unlock_passes_and_says_what_it_means():
    _, run = unattended_run()
    assert not run.failed("FV_ACCEPT"), run
    assert run.said("FV_ACCEPT: FileVault is on and power_settings_accept_manual_unlock is true"), run
    assert run.said("this Mac rejoins the cluster only once someone unlocks it at its screen"), run
