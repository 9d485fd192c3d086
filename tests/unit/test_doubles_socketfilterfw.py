"""The Application Firewall (issue 17, row c): the socketfilterfw double (tests/doubles/bin/socketfilterfw)
prints what macOS's CLI prints, in both wordings, and cluster_firewall's app-firewall.yml, run over a
local connection against it, lets the venv's Python and Ray's gcs_server and raylet accept connections.

With the firewall on, a program not signed by an identified developer (Ray's binaries and a venv's
python3.9 are at most ad-hoc signed) is blocked unless the firewall lists it as allowed, and a
LaunchDaemon has nobody to answer the prompt (ray-project/ray#18730, PR #18904); "Block all
incoming connections" blocks even what it lists (mullvad/mullvadvpn-app#9761). One Mac per scenario
(tests/unit/mac_harness.py), two playbook runs for all of them; each venv is a real one (no pip)
with a stand-in Ray package holding gcs_server and raylet.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mac_harness import DOUBLES, SETPRIV, Mac, Macs, as_nobody, needs_root

pytestmark = needs_root
APP_FIREWALL = [("cluster_firewall", "app-firewall.yml")]
VERIFY = [("cluster_firewall", "verify.yml")]


def sfw(mac, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(mac.bin / "socketfilterfw"), *args], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture(scope="module")
def macs():
    """ON: firewall on, run twice; SWITCH: allowed for v1, then the venv link moved to v2; OLDER: the
    older wording, raylet listed as blocked (verify.yml first, then app-firewall.yml); BLOCKALL;
    MANAGED (a profile refuses changes); OFF (firewall off)."""
    macs = Macs(["BLOCKALL", "MANAGED", "OFF", "OLDER", "ON", "SWITCH"])
    record = {}
    try:
        for mac in macs.values():
            mac.make_venv("v1")
            mac.vars["saf_firewall_enabled"] = False  # pf is test_doubles_pfctl.py's; verify.yml's ALF part here
        macs["ON"].alf(enabled=True, apps=[{"path": "/usr/sbin/cupsd", "allow": True}])
        macs["SWITCH"].alf(enabled=True)
        python, gcs, raylet = macs["OLDER"].programs()
        macs["OLDER"].alf(enabled=True, style="macos13", apps=[{"path": raylet, "allow": False},
                                                               {"path": python, "allow": True}])
        macs["BLOCKALL"].alf(enabled=True, blockall=True)
        macs["MANAGED"].alf(enabled=True, managed=True)
        macs["OFF"].alf(enabled=False)
        record["first"] = macs.run({"ON": APP_FIREWALL, "SWITCH": APP_FIREWALL, "OLDER": VERIFY,
                                    "BLOCKALL": APP_FIREWALL, "MANAGED": APP_FIREWALL, "OFF": APP_FIREWALL + VERIFY})
        record["apps"] = {name: mac.alf_apps() for name, mac in macs.items()}
        record["switch_before"] = set(macs["SWITCH"].programs())
        macs["SWITCH"].make_venv("v2")  # upgrade.yml moved the venv link
        record["second"] = macs.run({"ON": APP_FIREWALL, "SWITCH": APP_FIREWALL, "OLDER": APP_FIREWALL})
        record["apps_second"] = {name: mac.alf_apps() for name, mac in macs.items()}
        yield macs, record
    finally:
        macs.remove()


# --- the double -----------------------------------------------------------------------------------

def test_the_double_prints_macos_15s_wording_and_the_older_one(tmp_path):
    mac = Mac(tmp_path / "mac", "HEAD", "198.18.0.11")
    mac.alf(enabled=True, apps=[{"path": "/usr/sbin/cupsd", "allow": True}, {"path": "/opt/x/raylet", "allow": False}])
    out = sfw(mac, "--getglobalstate", "--getblockall", "--listapps").stdout
    assert out.splitlines() == [
        "Firewall is enabled. (State = 1)", "Firewall has block all state set to disabled.",
        "Total number of apps = 2 ", "", "1 : /usr/sbin/cupsd ", "             (Allow incoming connections)", "",
        "2 : /opt/x/raylet ", "             (Block incoming connections)", ""]
    mac.alf(enabled=True, blockall=True, style="macos13", apps=[{"path": "/opt/x/raylet", "allow": True}])
    out = sfw(mac, "--getglobalstate", "--getblockall", "--listapps").stdout
    assert out.splitlines() == ["Firewall is enabled. (State = 2)", "Block all ENABLED! ", "ALF: total number of apps = 1 ",
                                "", "1 :  /opt/x/raylet ", " \t ( Allow incoming connections ) ", ""]
    mac.alf()
    assert sfw(mac, "--getglobalstate").stdout == "Firewall is disabled. (State = 0)\n"


def test_the_double_adds_unblocks_and_blocks_as_root_only(tmp_path):
    mac = Mac(tmp_path / "mac", "HEAD", "198.18.0.11")
    mac.alf(enabled=True)
    assert sfw(mac, "--add", "/opt/x/raylet", "--blockapp", "/opt/x/raylet").returncode == 0
    assert mac.alf_apps() == {"/opt/x/raylet": False}
    assert sfw(mac, "--unblockapp", "/opt/x/raylet").returncode == 0
    assert mac.alf_apps() == {"/opt/x/raylet": True}
    mac.alf(enabled=True, managed=True)
    done = sfw(mac, "--add", "/opt/x/python")
    assert done.stdout == "Firewall settings cannot be modified from command line on managed Mac computers.\n"
    assert mac.alf_apps() == {}
    if SETPRIV:
        macs = Macs(["NOBODY"])
        try:
            refused = as_nobody(str(macs["NOBODY"].bin / "socketfilterfw"), "--add", "/opt/x/python")
            assert refused.returncode == 1 and "Must be root" in refused.stdout
        finally:
            macs.remove()
    assert (DOUBLES / "socketfilterfw").is_file()


# --- row (c): SAF lets Ray's programs through -----------------------------------------------------

def test_rays_programs_are_added_and_allowed_once(macs):
    macs, record = macs
    first, second = record["first"], record["second"]
    assert not first.failed("ON"), first
    assert record["apps"]["ON"] == {"/usr/sbin/cupsd": True, **{path: True for path in macs["ON"].programs()}}
    assert first.said("ON: the Application Firewall allows incoming connections to"), first
    assert not second.failed("ON") and second.changed("ON") == 0, second


def test_a_runtime_switch_gets_its_own_entries(macs):
    macs, record = macs
    assert not record["second"].failed("SWITCH"), record["second"]
    new = set(macs["SWITCH"].programs()) - record["switch_before"]
    assert len(new) == 2 and all(record["apps_second"]["SWITCH"][path] for path in new), record["apps_second"]


def test_verify_names_what_blocks_the_cluster_and_site_allows_it_in_the_older_wording(macs):
    macs, record = macs
    python, gcs, raylet = macs["OLDER"].programs()
    message = record["first"].fatal("OLDER")
    assert f"does not allow incoming connections to {gcs}, {raylet}: the other nodes cannot reach Ray" in message, \
        record["first"]
    second = record["second"]
    assert not second.failed("OLDER"), second
    assert record["apps_second"]["OLDER"] == {raylet: True, python: True, gcs: True}
    # Added: gcs_server only; allowed: it and raylet (listed as blocked); the Python was allowed already.
    added = second.output.split("TASK [cluster_firewall : Add Ray")[1].split("TASK [")[0]
    unblocked = second.output.split("TASK [cluster_firewall : Allow incoming")[1].split("TASK [")[0]
    assert re.search(r"\[OLDER\] => \(item=gcs_server:", added) and not re.search(r"\[OLDER\] => \(item=raylet:", added)
    assert re.search(r"\[OLDER\] => \(item=raylet:", unblocked) and not re.search(r"\[OLDER\] => \(item=python:", unblocked)


def test_block_all_fails_naming_the_host_and_the_fix(macs):
    macs, record = macs
    message = record["first"].fatal("BLOCKALL")
    assert "BLOCKALL: the macOS Application Firewall blocks all incoming connections" in message, record["first"]
    assert f"`sudo {macs['BLOCKALL'].bin / 'socketfilterfw'} --setblockall off`" in message
    assert record["apps"]["BLOCKALL"] == {}


def test_a_managed_firewall_that_refuses_fails_naming_the_programs(macs):
    macs, record = macs
    message = record["first"].fatal("MANAGED")
    assert "MANAGED: the Application Firewall still does not allow incoming connections to" in message, record["first"]
    assert all(path in message for path in macs["MANAGED"].programs())
    assert "cannot be modified from command line on managed Mac computers" in message


def test_a_firewall_that_is_off_is_left_alone_and_its_check_is_reported_skipped(macs):
    _, record = macs
    first = record["first"]
    assert not first.failed("OFF") and first.changed("OFF") == 0, first
    assert record["apps"]["OFF"] == {}
    assert first.said("OFF: skipped the Application Firewall check: the firewall is off here"), first
    assert first.said("OFF: skipped the pf check: saf_firewall_enabled is false"), first
