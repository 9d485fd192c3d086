"""The lab's Python discovery (lab/pythons.py) on fake trees: the order of the issue, never an assumption.

Each fake interpreter is an executable script that prints the release it claims, so the real
``interpreter_version`` runs it as it runs a real Python; uv's installer is a stand-in function.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

import pythons  # noqa: E402

LOCKED = {"3.9.18", "3.9.23"}


def fake_python(path: Path, version: str) -> Path:
    """An executable at ``path`` that answers ``-c ...`` with ``version``, as a Python would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def tree(tmp_path):
    """Empty pyenv root, uv python dir and system bin dir under tmp_path."""
    roots = {"pyenv": tmp_path / "pyenv", "uv": tmp_path / "uv", "system": tmp_path / "usr-bin"}
    for root in roots.values():
        root.mkdir()
    (roots["pyenv"] / "versions").mkdir()
    return roots


def find(tree, installer=None, uv="uv", target="3.9.23", locked=LOCKED):
    calls = []

    def no_network(uv_path, release):
        calls.append(release)
        return f"uv python install {release} failed: dns error"

    chosen, notes = pythons.find_python("3.9", target, locked, uv=uv, pyenv_root=tree["pyenv"], uv_dir=tree["uv"],
                                        installer=installer or no_network, system_dirs=[str(tree["system"])])
    return chosen, notes, calls


def test_the_exact_release_from_uv_comes_first(tree):
    fake_python(tree["pyenv"] / "versions/3.9.18/bin/python3.9", "3.9.18")
    fake_python(tree["system"] / "python3.9", "3.9.2")

    def installs(uv_path, release):
        fake_python(tree["uv"] / f"cpython-{release}-linux-x86_64-gnu/bin/python3.9", release)
        return ""

    chosen, notes, _ = find(tree, installer=installs)
    assert (chosen.version, chosen.source) == ("3.9.23", "uv-managed")
    assert chosen.path.endswith("cpython-3.9.23-linux-x86_64-gnu/bin/python3.9")
    assert notes == ["uv installed Python 3.9.23"]


def test_an_installed_uv_build_is_used_without_downloading(tree):
    fake_python(tree["uv"] / "cpython-3.9.23-linux-x86_64-gnu/bin/python3.9", "3.9.23")
    chosen, notes, calls = find(tree)
    assert (chosen.version, chosen.source) == ("3.9.23", "uv-managed")
    assert calls == [] and notes == []


def test_without_the_network_a_local_locked_release_is_chosen_and_why_is_said(tree):
    fake_python(tree["pyenv"] / "versions/3.9.18/bin/python3.9", "3.9.18")
    fake_python(tree["pyenv"] / "versions/3.9.20/bin/python3.9", "3.9.20")  # newer, but no lock
    chosen, notes, calls = find(tree)
    assert calls == ["3.9.23"]
    assert (chosen.version, chosen.source, chosen.prefix) == ("3.9.18", "pyenv", str(tree["pyenv"] / "versions/3.9.18"))
    assert notes == ["uv python install 3.9.23 failed: dns error",
                     f"Python 3.9.23 not available: using 3.9.18 (pyenv, {chosen.path})"]


def test_the_target_release_wins_wherever_it_is(tree):
    fake_python(tree["pyenv"] / "versions/3.9.18/bin/python3.9", "3.9.18")
    fake_python(tree["system"] / "python3.9", "3.9.23")
    chosen, _, _ = find(tree)
    assert (chosen.version, chosen.source) == ("3.9.23", "system")


def test_among_unlocked_releases_the_newest(tree):
    fake_python(tree["system"] / "python3.9", "3.9.2")
    fake_python(tree["pyenv"] / "versions/3.9.20/bin/python3.9", "3.9.20")
    chosen, _, _ = find(tree)
    assert chosen.version == "3.9.20"


def test_the_release_is_what_the_interpreter_says_not_its_directory(tree):
    fake_python(tree["pyenv"] / "versions/3.9.23/bin/python3.9", "3.9.17")  # a mislabelled build
    fake_python(tree["pyenv"] / "versions/3.9.18/bin/python3.9", "3.9.18")
    chosen, _, _ = find(tree)
    assert chosen.version == "3.9.18"


def test_interpreters_that_do_not_run_or_are_another_series_are_ignored(tree):
    broken = tree["pyenv"] / "versions/3.9.23/bin/python3.9"
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    fake_python(tree["system"] / "python3.9", "3.10.1")
    with pytest.raises(pythons.PythonNotFound):
        find(tree)


def test_nothing_found_names_every_place_and_the_fixes(tree):
    with pytest.raises(pythons.PythonNotFound) as raised:
        find(tree)
    message = str(raised.value)
    assert f"{tree['uv']}/cpython-3.9.*" in message and f"{tree['pyenv']}/versions/3.9.*" in message
    assert f"{tree['system']}/python3.9" in message
    assert "uv python install 3.9.23 failed: dns error" in message
    assert "`uv python install 3.9.23`" in message and "`pyenv install 3.9.23`" in message


def test_without_uv_nothing_is_downloaded(tree):
    fake_python(tree["pyenv"] / "versions/3.9.18/bin/python3.9", "3.9.18")
    chosen, _, calls = find(tree, uv=None)
    assert chosen.version == "3.9.18" and calls == []


def test_locked_releases_are_read_from_lock_file_names(tmp_path):
    for name in ("x86_64-manylinux_2_35-py3.9.18_ray-default-2.49.2_mlx-cpu-0.29.1.txt",
                 "x86_64-manylinux_2_35-py3.11.7_ray-default-2.52.1_mlx-cpu-0.29.1.txt",
                 "aarch64-apple-darwin-py3.9.23_ray-default-2.49.2_mlx-0.29.1.txt", "targets.yml"):
        (tmp_path / name).write_text("")
    assert pythons.locked_releases(tmp_path, "x86_64-manylinux_2_35") == {"3.9.18", "3.11.7"}


def test_the_repo_locks_the_lab_default():
    """The committed locks hold the release the lab falls back to on this kind of machine."""
    locks = Path(__file__).resolve().parents[2] / "locks"
    assert {"3.9.18", "3.9.23", "3.11.7"} <= pythons.locked_releases(locks, "x86_64-manylinux_2_35")


def test_uv_install_reports_a_refusal_in_one_line(tmp_path):
    uv = fake_python(tmp_path / "uv", "x")
    uv.write_text("#!/bin/sh\necho 'error: Failed to download' >&2\necho '  cause: dns error' >&2\nexit 2\n")
    assert pythons.uv_install(str(uv), "3.9.23") == "uv python install 3.9.23 failed: cause: dns error"


def test_uv_install_is_bounded(tmp_path):
    uv = fake_python(tmp_path / "uv", "x")
    uv.write_text("#!/bin/sh\nexec sleep 30\n")
    assert pythons.uv_install(str(uv), "3.9.23", timeout=0.5) == "uv python install 3.9.23 took over 0.5 s"
