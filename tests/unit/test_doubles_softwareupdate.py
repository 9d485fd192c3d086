"""Automatic macOS updates (issue 17, row f): the defaults double (tests/doubles/bin/defaults) reads
and writes a Mac's preferences files as ``defaults`` does, and power_settings, run over a local
connection against the doubles, says so, naming the host and the setting, when macOS may install
updates by itself: it restarts the Mac unannounced to finish one (tuist/tuist#13399). The playbook
run is shared with the other unattended-restart tests (tests/unit/mac_harness.py ``unattended_run``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mac_harness import Mac, Macs, SETPRIV, as_nobody, needs_root, unattended_run

pytestmark = needs_root


def defaults(mac, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(mac.bin / "defaults"), *args], capture_output=True, text=True, timeout=30)


def test_the_double_reads_keys_as_defaults_prints_them(tmp_path):
    mac = Mac(tmp_path / "mac", "HEAD", "198.18.0.11")
    domain = mac.software_update(AutomaticCheckEnabled=True, AutomaticallyInstallMacOSUpdates=False, LastResultCode=2)
    assert defaults(mac, "read", domain, "AutomaticCheckEnabled").stdout == "1\n"
    assert defaults(mac, "read", domain + ".plist", "AutomaticallyInstallMacOSUpdates").stdout == "0\n"
    missing = defaults(mac, "read", domain, "CriticalUpdateInstall")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == f"\nThe domain/default pair of ({domain}, CriticalUpdateInstall) does not exist\n"
    assert defaults(mac, "read", domain).stdout == (
        "{\n    AutomaticCheckEnabled = 1;\n    AutomaticallyInstallMacOSUpdates = 0;\n    LastResultCode = 2;\n}\n")
    nothing = defaults(mac, "read", str(mac.preferences / "com.apple.none"))
    assert (nothing.returncode, nothing.stderr) == (1, f"\nDomain {mac.preferences / 'com.apple.none'} does not exist\n")
    assert defaults(mac, "read", "com.apple.SoftwareUpdate").returncode == 2  # named domains: not imitated


def test_the_double_writes_and_deletes_keys(tmp_path):
    mac = Mac(tmp_path / "mac", "HEAD", "198.18.0.11")
    domain = mac.software_update()
    assert defaults(mac, "write", domain, "AutomaticallyInstallMacOSUpdates", "-bool", "false").returncode == 0
    assert defaults(mac, "read", domain, "AutomaticallyInstallMacOSUpdates").stdout == "0\n"
    assert defaults(mac, "delete", domain, "AutomaticallyInstallMacOSUpdates").returncode == 0
    assert defaults(mac, "read", domain, "AutomaticallyInstallMacOSUpdates").returncode == 1
    if SETPRIV:
        macs = Macs(["NOBODY"])  # a directory nobody can reach, its preferences root's
        try:
            other = macs["NOBODY"]
            domain = other.software_update(AutomaticCheckEnabled=True)
            refused = as_nobody(str(other.bin / "defaults"), "write", domain, "AutomaticCheckEnabled", "-bool", "false")
            assert (refused.returncode, refused.stderr) == (1, f"Could not write domain {domain}; exiting\n")
        finally:
            macs.remove()


@pytest.mark.parametrize("host, said", [("UP_AUTO", "AutomaticallyInstallMacOSUpdates is 1"),
                                        ("UP_UNSET", "AutomaticallyInstallMacOSUpdates is not set")])
def test_automatic_updates_are_named_with_the_host_and_the_setting(host, said):
    macs, run = unattended_run()
    domain = macs[host].preferences / "com.apple.SoftwareUpdate"
    assert not run.failed(host), run
    assert run.said(f"{host}: macOS may install updates by itself and restart this Mac unannounced to finish them"), run
    assert run.said(f"({domain} {said},"), run
    assert run.said(f"`sudo defaults write {domain} AutomaticallyInstallMacOSUpdates -bool false`"), run


def test_a_mac_that_installs_nothing_by_itself_gets_no_word():
    _, run = unattended_run()
    assert not run.failed("UP_OFF"), run
    assert not run.said("UP_OFF: macOS may install updates by itself"), run
