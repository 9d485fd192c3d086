"""launchd's rough edges on the macOS branch, walked with test_4_macos.py's Mac-forced BETA.

The launchctl test double (tests/doubles/bin/launchctl) is switched, through its settings file, to
the launchd behaviours public reports describe: a label lingering after bootout (bootstrap fails
with 5 meanwhile), bootout exiting 36 while the job stops, labels left disabled (bootstrap fails
with 119). site.yml must ride them out, give Ray the open-files limit of saf_ray_open_files_limit,
and, when launchd refuses a new plist, load the replaced one again. One cluster bring-up for the
module (test_4_macos's fixtures); the unit tests (tests/unit/test_launchd_tasks.py) cover the task
files one by one.
"""

from __future__ import annotations

import plistlib
import re

from labkit import lab_host, run_playbook
from macos_doubles import MAC, sh, write_json
from test_4_macos import ENV, EXTRA, PLIST, mac_lab, mac_site, read_file  # noqa: F401  (fixtures)

SETTINGS = f"{MAC}/bin/fake-launchctl.json"
LAUNCHCTL = f"{MAC}/bin/launchctl"


def raylet_open_files(host: str) -> tuple:
    pid = lab_host(host).process.get(comm="raylet").pid
    line = next(line for line in read_file(host, f"/proc/{pid}/limits").splitlines() if line.startswith("Max open files"))
    return pid, tuple(int(v) for v in line.split()[3:5])


def test_the_raylet_under_launchd_gets_the_open_files_limit(mac_site):
    _, limits = raylet_open_files("BETA")
    assert limits == (65536, 65536)
    job = plistlib.loads(read_file("BETA", PLIST).encode())
    assert job["SoftResourceLimits"] == job["HardResourceLimits"] == {"NumberOfFiles": 65536}


def test_a_restart_rides_out_linger_exit_36_and_disabled_labels(mac_site):
    """A plist change restarts Ray while the double lingers 3 s after each bootout, answers 36 to
    bootout and keeps both labels (Ray's and the Metal check's) disabled."""
    before, _ = raylet_open_files("BETA")
    write_json("BETA", SETTINGS, {"linger_seconds": 3, "bootout_exit": 36,
                                  "disabled": ["org.saf.ray", "org.saf.ray.metal-check"]})
    try:
        run = run_playbook("site.yml", *EXTRA, "-e", "saf_ray_open_files_limit=70000", env=ENV)
    finally:
        write_json("BETA", SETTINGS, {})
    assert run.returncode == 0, str(run)
    assert "RETRYING: [BETA]: Wait until launchd has forgotten the job" in run.output, str(run)
    after, limits = raylet_open_files("BETA")
    assert after != before and limits == (70000, 70000)
    assert "=> disabled" not in sh("BETA", f"{LAUNCHCTL} print-disabled system")


def test_a_plist_launchd_refuses_gives_way_to_the_one_it_replaced(mac_site):
    """A harness in front of the double refuses plists asking for --num-cpus=3 (exit 5). site.yml
    fails naming BETA, the label and the exit code, and BETA runs its previous definition again."""
    # The harness is another saf_launchctl: the double stays where its state and jobs are.
    harness = f"{MAC}/harness/launchctl"
    sh("BETA", f"mkdir -p {MAC}/harness && printf '%s\\n' '#!/bin/sh' "
               f"'[ \"$1\" = bootstrap ] && grep -q -- --num-cpus=3 \"$3\" && {{ echo \"Bootstrap failed: 5: Input/output error\" >&2; exit 5; }}' "
               f"'exec {LAUNCHCTL} \"$@\"' > {harness} && chmod 0755 {harness}")
    run = run_playbook("site.yml", *EXTRA, "-e", "saf_ray_num_cpus=3", "-e", "saf_launchd_unload_timeout=5",
                       "-e", f"saf_launchctl={harness}", env=ENV)
    assert run.returncode != 0, str(run)
    message = " ".join(run.output.split())
    assert re.search(r"BETA: launchd refused org\.saf\.ray: `launchctl bootstrap system \S+` exited 5", message), str(run)
    assert "The previous definition is running again" in message, str(run)
    status = sh("BETA", f"{LAUNCHCTL} print system/org.saf.ray")
    assert "state = running" in status and "--num-cpus=3" not in status
    # Needs restart.yml's rescue to keep a restored definition (it deletes the plist otherwise).
    assert "--num-cpus=3" not in read_file("BETA", PLIST)
