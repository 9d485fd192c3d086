# -*- coding: utf-8 -*-
"""Module test harness in the style of community.general's tests/unit/plugins/modules/utils.py.

``set_module_args`` is a context manager: ansible-core 2.19 reads module args
through ``ansible.module_utils.testing.patch_module_args`` (assigning
``basic._ANSIBLE_ARGS`` alone is not enough there); older cores fall back to
patching ``basic._ANSIBLE_ARGS``.  ``exit_json``/``fail_json`` are replaced by
functions raising :class:`AnsibleExitJson`/:class:`AnsibleFailJson`, whose
first argument is the result dict.  Assert on the result after the
``pytest.raises`` block, not inside it.
"""

from __future__ import annotations

import contextlib
import json
from unittest.mock import patch

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class AnsibleExitJson(Exception):
    """Raised by the patched ``AnsibleModule.exit_json``; ``args[0]`` is the result."""


class AnsibleFailJson(Exception):
    """Raised by the patched ``AnsibleModule.fail_json``; ``args[0]`` is the result."""


def exit_json(*args, **kwargs):
    if 'changed' not in kwargs:
        kwargs['changed'] = False
    raise AnsibleExitJson(kwargs)


def fail_json(*args, **kwargs):
    kwargs['failed'] = True
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def set_module_args(args):
    """Expose ``args`` as the module arguments of AnsibleModule instances created inside the block."""
    args = dict(args)
    args.setdefault('_ansible_remote_tmp', '/tmp')
    args.setdefault('_ansible_keep_remote_files', False)
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        serialized = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
        with patch.object(basic, '_ANSIBLE_ARGS', serialized):
            yield
    else:
        with patch_module_args(args):
            yield


@pytest.fixture
def patch_exit_fail():
    """Patch exit_json/fail_json of AnsibleModule for the duration of a test."""
    with patch.multiple(basic.AnsibleModule, exit_json=exit_json, fail_json=fail_json):
        yield


def run_module(main, args):
    """Run ``main()`` with ``args``; return ``(failed, result)``.

    Exit/fail must already be patched (fixture ``patch_exit_fail``).
    """
    with set_module_args(args):
        try:
            main()
        except AnsibleExitJson as exc:
            return False, exc.args[0]
        except AnsibleFailJson as exc:
            return True, exc.args[0]
    raise AssertionError('the module returned without calling exit_json or fail_json')
