# -*- coding: utf-8 -*-
"""Tests of library/saf_venv_info.py: the read node_env uses to skip pip, and parity_gate to compare.

The pure functions (names, lock pins, differences, the snippet's output) are called directly. The whole
module runs through the community.general-style harness against venvs in ``tmp_path``: real ones made
with the controller's Python (which has no Ray or MLX, so both imports fail unless the test puts a
package there), and TEST DOUBLES whose ``bin/python`` is a shell script printing canned output.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import venv as venv_lib
from pathlib import Path

import pytest

import saf_venv_info
from saf_venv_info import (
    MARKER,
    SNIPPET,
    canonical,
    installed_versions,
    lock_differences,
    locked_pins,
    parse_snippet_output,
)

from module_harness import AnsibleExitJson, AnsibleFailJson, patch_exit_fail, set_module_args  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "locks" / "x86_64-manylinux_2_35-py3.9.18_ray-default-2.49.2_mlx-cpu-0.29.1.txt"
HOST = socket.gethostname()


# --- pure functions ------------------------------------------------------------------------------

def test_the_committed_lock_pins_ray_and_mlx_and_nothing_twice():
    pins = locked_pins(LOCK.read_text())
    assert pins["ray"] == "2.49.2" and pins["mlx"] == "0.29.1"
    lines = [line for line in LOCK.read_text().splitlines() if "==" in line and not line.startswith((" ", "#"))]
    assert len(pins) == len(lines) > 20  # every pinned line, hash lines and comments skipped


def test_names_compare_normalised_and_every_difference_is_listed():
    pins = locked_pins("Ray==2.49.2 \\\n    --hash=sha256:00\nmlx_cpu==0.29.1\nzipp==3.0\n# via ray\n")
    installed = {"ray": "2.49.2", "mlx-cpu": "0.29.0"}
    assert lock_differences(pins, installed) == ["mlx-cpu: want 0.29.1, have 0.29.0",
                                                 "zipp: want 3.0, have none"]
    assert lock_differences(pins, dict(installed, **{"mlx-cpu": "0.29.1", "zipp": "3.0"})) == []


def test_locked_pins_takes_extras_and_markers_off():
    assert locked_pins("ray[default]==2.49.2 ; python_version >= '3.9'\nmlx[cpu]==0.29.1\\\n") == {
        "ray": "2.49.2", "mlx": "0.29.1"}
    assert canonical("Ray_CPP") == canonical("ray.cpp") == canonical("RAY--cpp") == "ray-cpp"


def test_installed_versions_are_canonical_and_the_first_of_a_name_wins():
    """importlib.metadata lists distributions in sys.path order: the first is the one Python imports."""
    assert installed_versions([["PyYAML", "6.0.2"], ["mlx_cpu", "0.29.1"], ["pyyaml", "5.0"], [None, "1"]]) == {
        "pyyaml": "6.0.2", "mlx-cpu": "0.29.1"}


def test_parse_snippet_output_takes_the_marked_line_among_noise():
    state = {"python": "3.9.23", "executable": "/opt/saf/venv/bin/python", "ray": "2.49.2", "mlx": "0.29.1",
             "distributions": [["ray", "2.49.2"]]}
    stdout = "noise printed at import\n{\"not\": \"this\"}\n\n%s%s\n" % (MARKER, json.dumps(state))
    assert parse_snippet_output(stdout) == state


@pytest.mark.parametrize("stdout, fragment", [
    ("", "no line starting with 'SAF_VENV_INFO'"),
    ('{"python": "3.9.23"}\n', "no line starting with"),
    (MARKER + "{not json\n", "its output is not JSON"),
    (MARKER + '{"python": "3.9.23", "ray": "2.49.2"}\n', "its output lacks executable, mlx, distributions"),
    (MARKER + "[1, 2]\n", "its output lacks python"),
])
def test_parse_snippet_output_refuses_what_is_not_a_report(stdout, fragment):
    with pytest.raises(ValueError) as raised:
        parse_snippet_output(stdout)
    assert fragment in str(raised.value)


def test_the_snippet_and_the_module_parse_as_python_3_9():
    """The snippet runs under the venv's Python, the module under the node's: both 3.9 on the Macs."""
    ast.parse(SNIPPET, feature_version=(3, 9))
    ast.parse(Path(saf_venv_info.__file__).read_text(), feature_version=(3, 9))


def _python_3_9():
    """A working Python 3.9 on this machine (pyenv's, or python3.9 on PATH), or None."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates += [shutil.which("python3.9")] if shutil.which("python3.9") else []
    for path in candidates:
        try:
            if subprocess.run([path, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"],
                              capture_output=True, timeout=30).returncode == 0:
                return path
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def test_the_snippet_runs_under_python_3_9():
    python = _python_3_9()
    if python is None:
        pytest.skip("no Python 3.9 on this machine")
    rc, stdout, stderr, timed_out = saf_venv_info.run_snippet(python, 60)
    assert (rc, timed_out) == (0, False), stderr
    state = parse_snippet_output(stdout)
    assert state["python"].startswith("3.9.") and state["executable"] and isinstance(state["distributions"], list)


# --- the module ------------------------------------------------------------------------------------

def run(args):
    """Run the module with ``args``; return ``(failed, result)``, asserted on after the raise."""
    with set_module_args(args):
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            saf_venv_info.main()
    return isinstance(raised.value, AnsibleFailJson), raised.value.args[0]


def real_venv(path):
    """A venv made with the controller's Python, without pip (nothing installed in it)."""
    venv_lib.EnvBuilder(with_pip=False, symlinks=True).create(str(path))
    return path


def site_packages(venv):
    return venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages"


def install_fake_distribution(venv, name, version, init_source):
    """A package ``name`` with its dist-info, as an interrupted pip install leaves it: pip lists it as
    installed, and its __init__ runs ``init_source``."""
    site = site_packages(venv)
    package = site.joinpath(*name.split("."))
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init_source)
    top = name.split(".")[0]
    if top != name:
        (site / top / "__init__.py").write_text("")
    info = site / ("%s-%s.dist-info" % (top, version))
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (top, version))


def fake_venv(path, script):
    """A TEST DOUBLE of a venv: ``bin/python`` is a shell script (``script`` is its body)."""
    python = path / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n" + script)
    python.chmod(0o755)
    return path


def canned(distributions, ray="2.49.2", mlx="0.29.1"):
    """A fake bin/python that prints noise, then the snippet's report with these values."""
    state = {"python": "3.9.23", "executable": "/opt/saf/venv/bin/python", "ray": ray, "mlx": mlx,
             "distributions": distributions}
    return "echo 'noise from an import'\ncat <<'EOF'\n%s%s\nEOF\n" % (MARKER, json.dumps(state))


def test_a_missing_venv_is_not_a_failure(tmp_path, patch_exit_fail):
    lock = tmp_path / "lock.txt"
    lock.write_text("ray==2.49.2\n")
    failed, result = run({"venv": str(tmp_path / "absent"), "lock": str(lock)})
    assert not failed and result["changed"] is False
    assert result["exists"] is False and result["venv"] == str(tmp_path / "absent")
    assert result["lock_found"] is True and "lock_differs" not in result
    assert not {"python", "executable", "ray", "mlx"} & set(result)
    assert result["msg"] == "%s: no venv at %s (%s does not exist)" % (
        HOST, tmp_path / "absent", tmp_path / "absent" / "bin" / "python")


def test_a_venv_whose_interpreter_link_is_dangling_does_not_exist(tmp_path, patch_exit_fail):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(tmp_path / "removed-base-python")
    failed, result = run({"venv": str(venv)})
    assert not failed and result["exists"] is False


def test_a_real_venv_without_ray_or_mlx_reports_both_imports_failed(tmp_path, patch_exit_fail):
    """The port of the old script test: this interpreter, an unsatisfied lock, then a missing lock."""
    venv = real_venv(tmp_path / "venv")
    lock = tmp_path / "lock.txt"
    lock.write_text("Surely_Not-installed.anywhere==1.0\nray==2.49.2\n")
    failed, result = run({"venv": str(venv), "lock": str(lock)})
    assert not failed, result
    assert result["exists"] is True
    assert result["executable"] == str(venv / "bin" / "python")
    assert result["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert result["ray"] == "import failed: No module named 'ray'"
    assert result["mlx"] == "import failed: No module named 'mlx'"
    assert result["lock"] == str(lock) and result["lock_found"] is True
    assert result["lock_differs"] == ["ray: want 2.49.2, have none",
                                      "surely-not-installed-anywhere: want 1.0, have none"]
    assert "msg" not in result

    failed, result = run({"venv": str(venv), "lock": str(tmp_path / "absent.txt")})
    assert not failed and result["lock_found"] is False and "lock_differs" not in result
    assert result["ray"].startswith("import failed")

    failed, result = run({"venv": str(venv)})
    assert not failed and not {"lock", "lock_found", "lock_differs"} & set(result)


def test_a_venv_whose_files_exist_but_do_not_import_says_import_failed(tmp_path, patch_exit_fail):
    """An interrupted install: ray's metadata says 2.49.2 (so the lock is satisfied), its import raises."""
    venv = real_venv(tmp_path / "venv")
    install_fake_distribution(venv, "ray", "2.49.2", "raise ImportError('libray.so: cannot open shared object')\n")
    install_fake_distribution(venv, "mlx.core", "0.29.1", "print('noise on stdout')\n__version__ = '0.29.1'\n")
    lock = tmp_path / "lock.txt"
    lock.write_text("ray==2.49.2 \\\n    --hash=sha256:00\nmlx==0.29.1\n")
    failed, result = run({"venv": str(venv), "lock": str(lock)})
    assert not failed, result
    assert result["ray"] == "import failed: libray.so: cannot open shared object"
    assert result["mlx"] == "0.29.1"
    assert result["lock_differs"] == []  # the files are there: only the import shows the damage


def test_each_read_starts_a_new_interpreter(tmp_path, patch_exit_fail):
    """A reinstall between two reads is seen by the second (nothing is imported in the module's process)."""
    venv = real_venv(tmp_path / "venv")
    install_fake_distribution(venv, "ray", "2.49.1", "__version__ = '2.49.1'\n")
    assert run({"venv": str(venv)})[1]["ray"] == "2.49.1"
    # A new size too: a .pyc written in the same second is trusted by mtime and size alone.
    (site_packages(venv) / "ray" / "__init__.py").write_text("__version__ = '2.49.2'  # reinstalled\n")
    assert run({"venv": str(venv)})[1]["ray"] == "2.49.2"


def test_a_lock_found_with_differences(tmp_path, patch_exit_fail):
    venv = fake_venv(tmp_path / "venv", canned([["Ray", "2.49.2"], ["mlx", "0.29.0"], ["Zipp", "3.23.0"]]))
    lock = tmp_path / "lock.txt"
    lock.write_text("# uv pip compile\nray[default]==2.49.2 \\\n    --hash=sha256:00\n    # via -r in\n"
                    "mlx==0.29.1\nzipp==3.23.0\npyyaml==6.0.2\n")
    failed, result = run({"venv": str(venv), "lock": str(lock), "_ansible_check_mode": True})
    assert not failed, result
    assert result["lock_found"] is True
    assert result["lock_differs"] == ["mlx: want 0.29.1, have 0.29.0", "pyyaml: want 6.0.2, have none"]
    assert (result["python"], result["ray"], result["mlx"]) == ("3.9.23", "2.49.2", "0.29.1")
    assert result["changed"] is False


def test_a_lock_not_found(tmp_path, patch_exit_fail):
    venv = fake_venv(tmp_path / "venv", canned([["ray", "2.49.2"]]))
    failed, result = run({"venv": str(venv), "lock": str(tmp_path / "wheelhouse" / "lock.txt")})
    assert not failed, result
    assert result["lock"] == str(tmp_path / "wheelhouse" / "lock.txt")
    assert result["lock_found"] is False and "lock_differs" not in result
    assert result["ray"] == "2.49.2" and result["exists"] is True


def test_an_interpreter_that_exits_non_zero_fails_naming_the_host(tmp_path, patch_exit_fail):
    venv = fake_venv(tmp_path / "venv", "echo 'Fatal Python error: init_fs_encoding' >&2\nexit 1\n")
    failed, result = run({"venv": str(venv)})
    assert failed and result["exists"] is True
    assert result["msg"] == ("%s: %s exited 1 reading the venv, want 0; its stderr: "
                             "Fatal Python error: init_fs_encoding" % (HOST, venv / "bin" / "python"))
    assert "python" not in result


def test_output_that_is_not_a_report_fails(tmp_path, patch_exit_fail):
    venv = fake_venv(tmp_path / "venv", "echo '{\"python\": \"3.9.23\"}'\n")
    failed, result = run({"venv": str(venv)})
    assert failed and result["msg"].startswith("%s: %s did not report the venv: no line starting with" % (
        HOST, venv / "bin" / "python"))


def test_an_import_that_hangs_is_killed_at_the_timeout(tmp_path, patch_exit_fail):
    """The whole process group goes: a child holding the pipes open does not stretch the wait."""
    venv = fake_venv(tmp_path / "venv", "echo 'importing' >&2\nsleep 30 &\nsleep 30\n")
    started = time.monotonic()
    failed, result = run({"venv": str(venv), "timeout": 0.5})
    assert failed and time.monotonic() - started < 10
    assert result["msg"] == ("%s: %s did not import Ray and MLX within 0.5 s (timeout); its stderr: importing"
                             % (HOST, venv / "bin" / "python"))


def test_a_timeout_must_be_positive(tmp_path, patch_exit_fail):
    failed, result = run({"venv": str(tmp_path), "timeout": 0})
    assert failed and result["msg"] == "%s: timeout must be > 0 seconds, got 0.0" % HOST


def test_an_unexpected_error_fails_with_the_host_and_the_exception(tmp_path, patch_exit_fail, monkeypatch):
    """Never a traceback-only MODULE FAILURE."""
    venv = fake_venv(tmp_path / "venv", canned([]))
    lock = tmp_path / "lock.txt"
    lock.write_text("ray==2.49.2\n")

    def broken(text):
        raise RuntimeError("disk said no")

    monkeypatch.setattr(saf_venv_info, "locked_pins", broken)
    failed, result = run({"venv": str(venv), "lock": str(lock)})
    assert failed
    assert result["msg"] == "%s: reading the venv %s failed: RuntimeError: disk said no" % (HOST, venv)
    assert "RuntimeError" in result["exception"]


def test_an_interpreter_that_cannot_be_run_fails_with_the_host(tmp_path, patch_exit_fail):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("not a program")
    (venv / "bin" / "python").chmod(0o644)
    if os.access(str(venv / "bin" / "python"), os.X_OK):  # pragma: no cover - root with odd mounts
        pytest.skip("files without x bits are executable here")
    failed, result = run({"venv": str(venv)})
    assert failed and result["msg"].startswith("%s: reading the venv %s failed: PermissionError" % (HOST, venv))


def test_return_documents_every_returned_key(tmp_path, patch_exit_fail):
    import yaml

    documented = set(yaml.safe_load(saf_venv_info.RETURN))
    lock = tmp_path / "lock.txt"
    lock.write_text("ray==2.49.2\n")
    seen = set()
    for args in ({"venv": str(real_venv(tmp_path / "venv")), "lock": str(lock)},
                 {"venv": str(tmp_path / "absent"), "lock": str(lock)}):
        seen |= set(run(args)[1])
    assert seen - {"changed", "failed"} <= documented
    assert documented <= seen | {"msg"}
