#!/usr/bin/python
# -*- coding: utf-8 -*-
# SAF: Ansible provisioning of a Ray 2.49.2 + MLX 0.29.1 cluster.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: saf_venv_info
short_description: Read what a Python venv on the node holds, Python, Ray and MLX, and how it differs from a lock
description:
  - "Runs the venv's own interpreter, C(<venv>/bin/python), in a new process that imports C(ray) and
    C(mlx.core) for real and lists the installed distributions (C(importlib.metadata)). A venv whose files
    exist but whose packages do not load (an interrupted install) shows C(import failed: ...) in RV(ray) or
    RV(mlx) instead of a version."
  - With O(lock), compares the installed distributions with every pinned line (C(name==version)) of that
    uv/pip-compile lock file on the node, by PEP 503 normalised name, without importing them
    (RV(lock_differs)). That takes about a tenth of a second where C(pip install) of an already satisfied
    lock takes about two.
  - The module itself runs under the node's ordinary module interpreter, not the venv's, so it works on a
    venv that is missing or broken. A missing venv is not a failure (RV(exists) is false).
  - The module only reads; RV(ignore:changed) is always false and it runs in check mode too.
version_added: "1.2.0"
author:
  - SAF maintainers
requirements:
  - Python 3.9 or later on the node for the module (standard library only), and in the venv
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode runs it unchanged, imports included.
  diff_mode:
    support: none
options:
  venv:
    description:
      - Directory of the venv to read. Its interpreter is C(bin/python) below it.
      - A link to a venv (such as C(saf_venv_dir)) is fine; the interpreter is started afresh on each run.
    type: path
    required: true
  lock:
    description:
      - Path on the node of a uv/pip-compile lock file (C(name[extras]==version) lines, hash lines and
        comments skipped).
      - When given, RV(lock) and RV(lock_found) are returned, and RV(lock_differs) when the lock was found and
        the venv read. A missing lock file is not a failure.
    type: path
  timeout:
    description:
      - Seconds the venv's interpreter may take to import Ray and MLX and list its distributions. Must be > 0.
      - Past that it is killed and the module fails.
    type: float
    default: 120
notes:
  - The read runs in a new process on purpose. Under the Mitogen strategy (C(ansible.cfg)) a module
    interpreter stays alive between tasks, and an import made in it would keep an earlier Ray in
    C(sys.modules) across a reinstall.
  - The venv's interpreter runs isolated (C(python -I)), so C(PYTHONPATH) and the user's site-packages of
    the connecting account do not change what it sees.
  - Used by C(roles/node_env) (to skip the wheelhouse and pip when nothing differs, and to find an install
    that does not import) and by C(roles/parity_gate).
seealso:
  - name: PEP 503 name normalisation
    description: How project names compare (C(Ray_CPP) and C(ray-cpp) are the same project).
    link: https://peps.python.org/pep-0503/#normalized-names
"""

EXAMPLES = r"""
# On every node of saf_cluster, as roles/parity_gate runs it: under the node's own module interpreter,
# which starts the venv's Python itself. saf_venv_dir is the saf role's default (the active venv).
- name: Read the venv's Python, Ray and MLX versions
  saf_venv_info:
    venv: "{{ saf_venv_dir }}"
  register: venv_read

- name: Show them
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }}: Python {{ venv_read.python }}, Ray {{ venv_read.ray }}, MLX {{ venv_read.mlx }}"
  when: venv_read.exists

# As roles/node_env runs it: the runtime tuple's own venv, against the lock copied to the node's
# wheelhouse. A missing venv, or one that cannot be read, is not a failure here: the result then has
# no python key.
- name: Read what the venv holds, against the lock
  saf_venv_info:
    venv: "{{ saf_runtime_venv }}"
    lock: "{{ _node_env_node_wheelhouse }}/{{ _node_env_wheelhouse.lock }}"
    timeout: 60
  register: venv_state
  failed_when: false

- name: Say what the lock wants that the venv lacks
  ansible.builtin.debug:
    msg: "{{ venv_state.lock_differs }}"
  when: venv_state.lock_differs | default([]) | length > 0
"""

RETURN = r"""
venv:
  description: O(venv), as given.
  returned: always
  type: str
  sample: /opt/saf/venv
exists:
  description:
    - Whether the venv's interpreter C(<venv>/bin/python) exists (a link to a removed base Python counts as
      missing). When false nothing else of the venv is returned.
  returned: always
  type: bool
  sample: true
python:
  description: Python version of the venv's interpreter (C(platform.python_version), major.minor.micro).
  returned: when the venv exists and was read
  type: str
  sample: 3.9.23
executable:
  description: C(sys.executable) of the venv's interpreter.
  returned: when the venv exists and was read
  type: str
  sample: /opt/saf/venv/bin/python
ray:
  description: "C(ray.__version__), or C(import failed: <exception>) when C(import ray) raised."
  returned: when the venv exists and was read
  type: str
  sample: 2.49.2
mlx:
  description: "C(mlx.core.__version__), or C(import failed: <exception>) when C(import mlx.core) raised."
  returned: when the venv exists and was read
  type: str
  sample: 0.29.1
msg:
  description:
    - Why nothing was read, naming the node, when RV(exists) is false (then not a failure; a task that needs the
      venv can fail on RV(exists) and show it). On a failure, what failed.
  returned: when RV(exists) is false, and on failure
  type: str
  sample: "ALPHA.local: no venv at /opt/saf/venv (/opt/saf/venv/bin/python does not exist)"
lock:
  description: O(lock), as given.
  returned: when O(lock) is given
  type: str
  sample: /opt/saf/wheelhouse/macosx_14_0_arm64-cp39/aarch64-apple-darwin-py3.9.23_ray-default-2.49.2_mlx-0.29.1.txt
lock_found:
  description: Whether O(lock) is a file.
  returned: when O(lock) is given
  type: bool
  sample: true
lock_differs:
  description:
    - "One C(name: want W, have H) per pinned package of the lock that the venv lacks (C(have none)) or holds
      at another version, sorted by name; empty when every pinned package is installed at its pinned version."
  returned: when O(lock) is given, the lock was found and the venv read
  type: list
  elements: str
  sample: ["mlx: want 0.29.1, have 0.29.0", "zipp: want 3.23.0, have none"]
"""

import json
import os
import re
import signal
import socket
import subprocess
import traceback

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    venv=dict(type='path', required=True),
    lock=dict(type='path'),
    timeout=dict(type='float', default=120),
)

#: A pinned requirement line of a uv/pip-compile lock: ``name[extras]==version`` (then hashes).
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")

#: Starts the line of the snippet's output that carries its JSON (an import may print to stdout too).
MARKER = 'SAF_VENV_INFO '

#: Run by the venv's interpreter (``python -I -c``): Python 3.9 and later, standard library only. It prints
#: what the venv holds as one JSON line after MARKER; names are left as the metadata gives them.
SNIPPET = '''
import json, platform, sys
from importlib import metadata


def imported_version(module):
    try:
        return __import__(module, fromlist=["__version__"]).__version__
    except Exception as exc:  # report any import failure, not only ImportError
        return "import failed: %s" % exc


state = {"python": platform.python_version(), "executable": sys.executable,
         "ray": imported_version("ray"), "mlx": imported_version("mlx.core"),
         "distributions": [[dist.metadata["Name"], dist.version] for dist in metadata.distributions()
                           if dist.metadata["Name"]]}
sys.stdout.write("\\n" + MARKER + json.dumps(state) + "\\n")
'''.replace('MARKER', json.dumps(MARKER))

#: Keys the snippet's JSON must hold.
SNIPPET_KEYS = ('python', 'executable', 'ray', 'mlx', 'distributions')


def canonical(name):
    """PEP 503 normalised project name: ``Ray_CPP`` and ``ray-cpp`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(text):
    """``{canonical name: version}`` of every pinned line of a lock file's text."""
    pins = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed_versions(distributions):
    """``{canonical name: version}`` of ``[[name, version], ...]`` in ``sys.path`` order: the first
    distribution of a name is the one Python imports, as pip and importlib.metadata read it."""
    found = {}
    for name, version in distributions:
        if name:
            found.setdefault(canonical(name), version)
    return found


def lock_differences(pins, installed):
    """``['name: want W, have H', ...]`` (``have none`` when missing), sorted by name."""
    return ["%s: want %s, have %s" % (name, want, installed.get(name, "none"))
            for name, want in sorted(pins.items()) if installed.get(name) != want]


def parse_snippet_output(stdout):
    """The snippet's state (a dict with SNIPPET_KEYS) from its stdout: the last line starting with MARKER.

    Raises ValueError when there is no such line, or its JSON is not an object with those keys."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise ValueError('no line starting with %r in its output' % MARKER.strip())
    try:
        state = json.loads(lines[-1][len(MARKER):])
    except ValueError as exc:
        raise ValueError('its output is not JSON (%s): %s' % (exc, lines[-1][:200]))
    if not isinstance(state, dict) or any(key not in state for key in SNIPPET_KEYS):
        raise ValueError('its output lacks %s: %s' % (
            ', '.join(key for key in SNIPPET_KEYS if not isinstance(state, dict) or key not in state),
            lines[-1][:200]))
    return state


def venv_python(venv):
    return os.path.join(venv, 'bin', 'python')


def run_snippet(python, timeout):
    """Run the snippet under ``python``; return ``(rc, stdout, stderr, timed_out)``, text.

    subprocess rather than AnsibleModule.run_command: run_command has no timeout in ansible-core 2.19, and an
    import that hangs (a wedged filesystem, a package doing I/O at import) must not hang the play. The
    interpreter gets a session of its own, and on timeout its whole process group is killed (a child it
    started would otherwise hold the pipes open); ``rc`` is then None and the output so far is kept."""
    proc = subprocess.Popen([python, '-I', '-c', SNIPPET], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
        stdout, stderr = proc.communicate()
        return None, _text(stdout), _text(stderr), True
    return proc.returncode, _text(stdout), _text(stderr), False


def _text(data):
    if data is None:
        return ''
    if isinstance(data, bytes):
        return data.decode('utf-8', errors='replace')
    return data


def _tail(text, lines=5):
    return ' | '.join(text.strip().splitlines()[-lines:]) or 'nothing'


def read_venv(params, host):
    """Return ``(error_or_None, result)``."""
    venv, lock, timeout = params['venv'], params['lock'], params['timeout']
    result = dict(changed=False, venv=venv, exists=os.path.exists(venv_python(venv)))
    if lock is not None:
        result.update(lock=lock, lock_found=os.path.isfile(lock))
    if timeout <= 0:
        return '%s: timeout must be > 0 seconds, got %s' % (host, timeout), result
    if not result['exists']:
        result['msg'] = '%s: no venv at %s (%s does not exist)' % (host, venv, venv_python(venv))
        return None, result
    python = venv_python(venv)
    rc, stdout, stderr, timed_out = run_snippet(python, timeout)
    if timed_out:
        return ('%s: %s did not import Ray and MLX within %s s (timeout); its stderr: %s'
                % (host, python, timeout, _tail(stderr))), result
    if rc != 0:
        return '%s: %s exited %s reading the venv, want 0; its stderr: %s' % (host, python, rc, _tail(stderr)), result
    try:
        state = parse_snippet_output(stdout)
    except ValueError as exc:
        return '%s: %s did not report the venv: %s' % (host, python, exc), result
    result.update((key, state[key]) for key in ('python', 'executable', 'ray', 'mlx'))
    if result.get('lock_found'):
        with open(lock) as handle:
            pins = locked_pins(handle.read())
        result['lock_differs'] = lock_differences(pins, installed_versions(state['distributions']))
    return None, result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    host = socket.gethostname()
    try:
        error, result = read_venv(module.params, host)
    except Exception as exc:  # never a traceback-only MODULE FAILURE: name the host, the venv and the error
        module.fail_json(msg='%s: reading the venv %s failed: %s: %s' % (
            host, module.params['venv'], type(exc).__name__, exc), exception=traceback.format_exc())
    if error:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
