"""ray_node's launchd task files (launchd-definition.yml, launchd-stop.yml, launchd-start.yml,
metal_check.yml) run for real, over a local connection, against the launchctl test double
(tests/doubles/bin/launchctl) switched to the launchd behaviours public reports describe:

* a label that lingers after bootout, refusing bootstrap with 5: the stop waits until
  `launchctl print` says 113, bounded by saf_launchd_unload_timeout, and fails naming host, label
  and exit codes past the bound (headroomlabs-ai/headroom#1289, Layr-Labs/d-inference#1102);
* bootout exiting 36 while the job still stops (osquery/osquery#5698);
* a disabled label refusing bootstrap with 119: the start enables it first, for Ray's job and the
  Metal check's (DeterminateSystems/nix-installer#530, #555), and a 119 that persists is reported
  as disabled in Login Items / Allow in the Background, with the fix;
* a new plist launchd will not load on the last try: the replaced one is loaded again.

tests/unit/playbooks/launchd_steps.yml works out the Ray command line and includes the task files
named. Ray's job is a stub ``ray`` that sleeps; the Metal check's Python is a stub that prints
what MLX prints. Everything lives in ``tmp_path``; the double's jobs are killed afterwards. The
double, like launchctl, lets only root use the system domain: without root these tests skip.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_doubles_launchctl import kill_jobs

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "launchd_steps.yml"
DOUBLE = REPO / "tests" / "doubles" / "bin" / "launchctl"
LABEL = "org.saf.ray"
METAL = "org.saf.ray.metal-check"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the double, like launchctl, lets only root use the system domain")


class Mac:
    """A Mac's launchd paths in a temporary directory, with the launchctl double."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.double = self.bin / "launchctl-double"  # its state goes next to it
        shutil.copy2(DOUBLE, self.double)
        self.launchctl = self.bin / "launchctl"  # what the role calls: the double, or a harness around it
        self.harness()
        self.daemons = root / "LaunchDaemons"
        self.daemons.mkdir()
        self.plist = self.daemons / f"{LABEL}.plist"
        self.previous = root / "saf" / "launchd" / f"{LABEL}.plist.previous"
        venv = root / "venv" / "bin"
        venv.mkdir(parents=True)
        for name, script in {"ray": "exec sleep 60\n", "python": 'echo "ok Device(gpu, 0)"\n'}.items():
            (venv / name).write_text("#!/bin/sh\n" + script)
            (venv / name).chmod(0o755)

    def harness(self, before: str = "") -> None:
        """saf_launchctl: ``before`` (sh, may exit) and then the double."""
        self.launchctl.write_text(f'#!/bin/sh\n{before}exec "{sys.executable}" "{self.double}" "$@"\n')
        self.launchctl.chmod(0o755)

    def settings(self, **values) -> None:
        (self.bin / "fake-launchctl.json").write_text(json.dumps(values))

    def ctl(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(self.double), *args], capture_output=True, text=True, timeout=30)

    def load(self, argv=("sleep", "60")) -> int:
        """A loaded Ray job (as an earlier run left it); returns its pid."""
        self.plist.write_bytes(plistlib.dumps({"Label": LABEL, "ProgramArguments": list(argv), "RunAtLoad": True,
                                               "KeepAlive": True, "ExitTimeOut": 2}))
        assert self.ctl("bootstrap", "system", str(self.plist)).returncode == 0
        return self.pid()

    def status(self, label=LABEL) -> subprocess.CompletedProcess:
        return self.ctl("print", f"system/{label}")

    def pid(self, label=LABEL) -> int:
        for _ in range(50):
            found = re.search(r"pid = (\d+)", self.status(label).stdout)
            if found:
                return int(found.group(1))
            subprocess.run(["sleep", "0.1"], check=True)
        raise AssertionError(f"{label} is not running:\n{self.status(label).stdout}")

    def run(self, steps, **extra):
        """Run the task files ``steps`` on HEAD; returns (returncode, output)."""
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "saf_node_ip": "198.18.0.11", "saf_root_dir": str(self.root / "saf"),
                "saf_venv_dir": str(self.root / "venv"), "saf_ray_temp_dir": str(self.root / "saf" / "ray"),
                "saf_ray_log_dir": str(self.root / "log"), "saf_ray_service_manager": "launchd",
                "saf_ray_user": "root", "saf_launchctl": str(self.launchctl), "saf_launchd_dir": str(self.daemons),
                "saf_launchd_unload_timeout": 10, "saf_metal_check_timeout": 10, **extra}
        inventory = {"saf_cluster": {"children": {"ray_head": {"hosts": {"HEAD": host}}, "ray_workers": {"hosts": {}}}}}
        (self.root / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (self.root / "extra.yml").write_text(yaml.safe_dump({"launchd_steps": list(steps)}))
        env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
        env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(self.root / "inventory.yml"),
                               "-e", f"@{self.root / 'extra.yml'}", str(PLAYBOOK)],
                              cwd=REPO, capture_output=True, text=True, timeout=180, check=False, env=env)
        return proc.returncode, proc.stdout + proc.stderr

    def kill_all(self) -> None:
        kill_jobs(self.bin)


@pytest.fixture
def mac(tmp_path):
    mac = Mac(tmp_path)
    yield mac
    mac.kill_all()


def fatal(out: str) -> str:
    """The fatal message(s) of a run, on one line."""
    return " ".join(" ".join(re.findall(r"^fatal: .*?(?=^\S|\Z)", out, re.M | re.S)).split())


def results(out: str, task: str) -> list:
    """HEAD's status (ok, changed, failed, skipping) each time ray_node's task ``task`` ran."""
    return re.findall(rf"^TASK \[ray_node : {re.escape(task)}\] \*+\n(?:.*\n)*?(\w+): \[HEAD\]", out, re.M)


STOP_START = ["launchd-stop.yml", "launchd-start.yml"]


def test_the_stop_waits_until_a_lingering_label_is_gone_before_the_start(mac):
    """A new definition replaces the loaded one. After bootout the label lingers 1.5 s, refusing
    bootstrap with 5: the stop waits for `launchctl print` to say 113, then the start loads the new
    job at once, and the replaced plist, kept outside LaunchDaemons until then, is dropped."""
    before = mac.load()
    mac.settings(linger_seconds=1.5)
    code, out = mac.run(["launchd-definition.yml", *STOP_START])
    assert code == 0, out
    assert "RETRYING: [HEAD]: Wait until launchd has forgotten the job" in out, out
    assert "RETRYING: [HEAD]: Load the job" not in out, "the start found the label gone"
    assert mac.pid() != before and "--block" in mac.status().stdout
    assert results(out, "Keep the plist that is being replaced") == ["changed"], out
    assert not mac.previous.exists() and [p.name for p in mac.daemons.iterdir()] == [f"{LABEL}.plist"]


def test_bootout_exit_36_counts_as_stopping(mac):
    """bootout exits 36 ("Operation now in progress") and the job still stops: the stop goes on,
    waits until launchd has forgotten the job, and the start loads it again."""
    before = mac.load()
    mac.settings(bootout_exit=36, linger_seconds=1)
    code, out = mac.run(STOP_START)
    assert code == 0, out
    assert mac.pid() != before


def test_the_wait_is_bounded_and_names_host_label_and_exit_codes(mac):
    mac.load()
    mac.settings(linger_seconds=30)
    code, out = mac.run(STOP_START, saf_launchd_unload_timeout=2)
    assert code != 0, out
    message = fatal(out)
    assert (f"HEAD: launchd still has {LABEL} 2 s after `launchctl bootout system/{LABEL}` (exit 0): "
            f"`launchctl print system/{LABEL}` last exited 0, not 113") in message, out
    assert "TASK [ray_node : Load the job]" not in out, "nothing may load the job while launchd still has it"


def test_a_disabled_label_is_enabled_before_the_metal_check_and_rays_job_load(mac):
    """Both labels disabled (launchctl disable, unload -w, Allow in the Background off): bootstrap
    would fail with 119; the role enables each label first and reports that as a change."""
    mac.plist.write_bytes(plistlib.dumps({"Label": LABEL, "ProgramArguments": ["sleep", "60"], "RunAtLoad": True}))
    for label in (LABEL, METAL):
        assert mac.ctl("disable", f"system/{label}").returncode == 0
    code, out = mac.run(["metal_check.yml", "launchd-start.yml"])
    assert code == 0, out
    assert "HEAD: MLX computes on ok Device(gpu, 0) in the launchd context of the Ray job" in out, out
    assert results(out, "Enable the job's label") == ["changed", "changed"], out
    assert "disabled" not in mac.ctl("print-disabled", "system").stdout.replace("disabled services", "")
    assert mac.pid()
    assert mac.status(METAL).returncode == 113, "the Metal check is unloaded again"


def test_a_label_that_stays_disabled_is_reported_with_the_fix(mac):
    """119 although the role ran `launchctl enable` (a harness drops the enable, as when the switch
    in System Settings keeps the job off): the failure says so and how to fix it."""
    mac.plist.write_bytes(plistlib.dumps({"Label": LABEL, "ProgramArguments": ["sleep", "60"], "RunAtLoad": True}))
    mac.ctl("disable", f"system/{LABEL}")
    mac.harness('[ "$1" = enable ] && exit 0\n')
    code, out = mac.run(["launchd-start.yml"])
    assert code != 0, out
    message = fatal(out)
    assert f"HEAD: launchd refused {LABEL}: `launchctl bootstrap system {mac.plist}` exited 119: " in message, out
    assert "disabled (Login Items / Allow in the Background)" in message and "Allow in the Background, turn its entry on" in message
    assert f"sudo launchctl enable system/{LABEL}" in message and "Service is disabled" in message


def test_a_new_plist_that_will_not_load_gives_way_to_the_replaced_one_on_the_last_try(mac):
    """The plist is rewritten (--num-cpus 4 to 99) and launchd refuses the new one (a harness
    answers 5 for it). restart.yml's first try fails plainly; its last try loads the replaced plist
    again and fails saying so, so the node keeps the Ray it had."""
    first = mac.load([str(mac.root / "venv" / "bin" / "ray"), "start", "--num-cpus=4", "--block"])
    mac.harness('[ "$1" = bootstrap ] && grep -q -- "--num-cpus=99" "$3" && '
                '{ echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; }\n')
    steps = ["launchd-definition.yml", "launchd-stop.yml", "launchd-start.yml"]

    code, out = mac.run(steps, saf_ray_num_cpus=99, saf_launchd_unload_timeout=2)
    assert code != 0, out
    assert f"HEAD: launchd refused {LABEL}: `launchctl bootstrap system {mac.plist}` exited 5 (Input/output error) for 2 s" in fatal(out), out
    assert "previous definition" not in fatal(out), "the first try leaves the retry to restart.yml"
    assert mac.status().returncode == 113 and "--num-cpus=99" in mac.plist.read_text()
    assert "--num-cpus=4" in mac.previous.read_text(), "kept outside LaunchDaemons for the last try"
    assert [p.name for p in mac.daemons.iterdir()] == [f"{LABEL}.plist"]

    code, out = mac.run(steps, saf_ray_num_cpus=99, saf_launchd_unload_timeout=2, _ray_node_last_try=True)
    assert code != 0, out
    assert "exited 5 (Input/output error)" in fatal(out) and "The previous definition is running again" in fatal(out), out
    job = plistlib.loads(mac.plist.read_bytes())
    assert "--num-cpus=4" in job["ProgramArguments"]
    assert "--num-cpus=4" in mac.status().stdout and mac.pid() != first
