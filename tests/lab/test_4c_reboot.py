"""A Mac comes back by itself: BETA, made a Mac by the doubles as in test_4_macos.py, is restarted
(and then updated and restarted) without site.yml, and pf, Ray and verify.yml come back.

"Restart" (tests/lab/macos_doubles.py ``reboot_mac``): every process of BETA's Mac tree is killed
(the launchd double's supervisors and Ray), pf is disabled and empty, launchd forgets its jobs and
the ready file of the previous boot goes; then, as launchd does at boot, the RunAtLoad jobs are
loaded: Apple's com.apple.pfctl (loads pf.conf, leaves pf disabled: SelfControlApp/selfcontrol#815,
Homebrew/legacy-homebrew#42599), SAF's org.saf.pf, Ray's org.saf.ray. "Update"
(``simulate_macos_update``): Apple's default /etc/pf.conf, without site.yml's lines
(tuist/tuist#11425). ALPHA, the Linux head, keeps running; BETA's Ray joins it under a new node ID.

One module-scoped bring-up (test_4_macos.py's ``mac_lab``: the doubles on both hosts, reset and the
plain lab afterwards); the tests run in order; every wait is bounded.
"""

from __future__ import annotations

import json
import plistlib
import time

import pytest

from labkit import raylet_running, read_report, run_playbook
from macos_doubles import MAC, reboot_mac, sh, simulate_macos_update, wait_until
from test_4_macos import ENV, EXTRA, mac_lab  # noqa: F401  (the module's bring-up, reused)

PFCTL = f"{MAC}/sbin/pfctl"
STEPS = "tests/unit/playbooks/macos_steps.yml"
FIREWALL_VERIFY = json.dumps({"macos_steps": [{"role": "cluster_firewall", "tasks": "verify.yml"}]})
BOOT_JOBS = ["com.apple.pfctl", "org.saf.pf", "org.saf.ray"]


@pytest.fixture(scope="module")
def first_node_id(mac_lab):
    """site.yml and verify.yml with BETA as a Mac; BETA's node ID before any restart."""
    site = run_playbook("site.yml", *EXTRA, env=ENV)
    assert site.returncode == 0, str(site)
    verify = run_playbook("verify.yml", *EXTRA, env=ENV)
    assert verify.returncode == 0, str(verify)
    return read_report()["workers"][0]["node_id"]


def pf_ready() -> bool:
    """pf on BETA: enabled, SAF's rules in com.apple/org.saf.ray, and the main ruleset evaluating them."""
    info = sh("BETA", f"{PFCTL} -s info").strip()
    main = sh("BETA", f"{PFCTL} -s rules")
    anchor = sh("BETA", f"{PFCTL} -a com.apple/org.saf.ray -s rules")
    return info == "Status: Enabled" and 'anchor "com.apple/*"' in main and "block drop in quick" in anchor


def comes_back(before: str) -> str:
    """Restart BETA; show pf and Ray back and verify.yml passing, without site.yml. Returns the new node ID."""
    started = reboot_mac("BETA")
    assert [label for label in started if label in BOOT_JOBS] == BOOT_JOBS, started
    wait_until("pf enabled with SAF's rules on BETA", pf_ready, timeout=90)
    wait_until("a raylet on BETA", lambda: raylet_running("BETA"), timeout=240, interval=3)

    # The worker registers with the head's GCS a few seconds after its raylet starts: one more try.
    verify = run_playbook("verify.yml", *EXTRA, env=ENV)
    if verify.returncode != 0:
        time.sleep(15)
        verify = run_playbook("verify.yml", *EXTRA, env=ENV)
    assert verify.returncode == 0, str(verify)
    (beta,) = read_report()["workers"]
    assert beta["executed_on"] == "BETA.local" and beta["passed"], beta
    assert beta["node_id"] != before, "Ray on BETA started again, under a new node ID"

    steps = run_playbook(STEPS, *EXTRA, "--limit", "BETA", "-e", FIREWALL_VERIFY, env=ENV)
    assert steps.returncode == 0, str(steps)
    assert "in this boot, and org.saf.pf loads them again at every boot" in " ".join(steps.output.split()), str(steps)
    return beta["node_id"]


@pytest.fixture(scope="module")
def after_restart(first_node_id):
    return comes_back(first_node_id)


def test_a_restart_brings_back_pf_ray_and_verify(after_restart):
    job = plistlib.loads(sh("BETA", f"cat {MAC}/Library/LaunchDaemons/org.saf.pf.plist").encode())
    assert job["RunAtLoad"] is True and job["ProgramArguments"][-1] == "load"
    assert 'anchor "org.saf.ray"' in sh("BETA", f"cat {MAC}/etc/pf.conf"), "no update yet: site.yml's lines are there"


@pytest.fixture(scope="module")
def after_update(after_restart):
    simulate_macos_update("BETA")
    return comes_back(after_restart)


def test_after_an_update_pf_holds_without_the_pf_conf_lines(after_update):
    conf = sh("BETA", f"cat {MAC}/etc/pf.conf")
    assert "org.saf.ray" not in conf and 'anchor "com.apple/*"' in conf, conf
    # The anchor pf.conf used to load is gone; the one Apple's pf.conf evaluates holds SAF's rules.
    assert sh("BETA", f"{PFCTL} -a org.saf.ray -s rules").strip() == ""
    assert pf_ready()


def test_site_yml_then_restores_the_pf_conf_lines_and_leaves_ray_running(after_update):
    before = sh("BETA", "pgrep -x raylet").split()
    site = run_playbook("site.yml", *EXTRA, env=ENV)
    assert site.returncode == 0, str(site)
    assert 'anchor "org.saf.ray"' in sh("BETA", f"cat {MAC}/etc/pf.conf")
    assert site.recap["BETA"]["changed"] == 2, "the pf.conf lines and loading pf.conf, nothing else:\n" + str(site)
    assert sh("BETA", "pgrep -x raylet").split() == before
