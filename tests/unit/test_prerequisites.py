"""lab/prerequisites.py: one list of system packages, installed when missing, named when it cannot install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

import prerequisites  # noqa: E402
import saflab  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_missing_groups_what_is_absent_by_package():
    absent = {"/usr/sbin/sshd", "ssh", "ssh-keygen"}
    needed = prerequisites.missing(exists=lambda what: what not in absent, has_venv=lambda python: True)
    assert set(needed) == {"openssh-server", "openssh-client"}
    assert needed["openssh-client"] == ["ssh (lab: Ansible's connection to the lab hosts)",
                                        "ssh-keygen (lab: the lab's host and client keys)"]


def test_nothing_missing_is_an_empty_answer():
    assert prerequisites.missing(exists=lambda what: True, has_venv=lambda python: True) == {}


def test_a_debian_python_without_venv_needs_python3_venv():
    needed = prerequisites.missing(python="/usr/bin/python3", exists=lambda what: True, has_venv=lambda python: False)
    assert list(needed) == ["python3-venv"]


def test_the_install_command_names_every_package():
    assert prerequisites.install_command({"rsync": [], "nftables": []}) == \
        "apt-get update && apt-get install -y --no-install-recommends nftables rsync"


def test_check_reports_every_missing_package_and_the_command(monkeypatch, capsys):
    monkeypatch.setattr(prerequisites, "present", lambda what: what not in ("rsync", "nft"))
    assert prerequisites.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "nftables: nft (lab: the Ray firewall on Linux nodes)" in err
    assert "rsync: rsync (bench: `ray up`'s file mounts)" in err
    assert "apt-get update && apt-get install -y --no-install-recommends nftables rsync" in err


def test_a_user_who_cannot_install_gets_one_message(monkeypatch, capsys):
    monkeypatch.setattr(prerequisites, "present", lambda what: what != "rsync")
    monkeypatch.setattr(prerequisites, "can_install", lambda: "not root")
    monkeypatch.setattr(prerequisites, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("installed")))
    assert prerequisites.main([]) == 1
    assert "missing system packages (not root)" in capsys.readouterr().err


def test_this_machine_has_everything_after_make_prerequisites():
    """`make test` depends on `make prerequisites`, so by now nothing is missing."""
    proc = subprocess.run([sys.executable, str(REPO / "lab" / "prerequisites.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "prerequisites: every system package is present"


def test_the_lab_checks_its_subset_of_the_one_list():
    tools = {what for what, _, _ in prerequisites.REQUIREMENTS}
    assert set(prerequisites.LAB) <= tools
    assert saflab.SSHD in prerequisites.LAB


def test_every_entry_point_depends_on_prerequisites():
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test", "bench"):
        line = next(line for line in makefile.splitlines() if line.startswith(f"{target}:"))
        assert "prerequisites" in line.split(":", 1)[1].split(), line
    ci = (REPO / ".ci" / "run").read_text()
    assert "apt-get" not in ci and "make prerequisites" in ci
