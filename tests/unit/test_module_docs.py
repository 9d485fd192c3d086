# -*- coding: utf-8 -*-
"""DOCUMENTATION / EXAMPLES / RETURN of the SAF modules agree with their argument_spec, and stay Python 3.9."""

from __future__ import annotations

import ast
import glob
import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

import saf_mlx_probe
import saf_ray_membership
import saf_tailscale_check

MODULES = [saf_mlx_probe, saf_ray_membership, saf_tailscale_check]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY_DIR = os.path.join(REPO_ROOT, 'library')
MODULE_UTILS_DIR = os.path.join(REPO_ROOT, 'module_utils')
# Every module in library/, found by name so a new one is covered without editing this file.
LIBRARY_MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(LIBRARY_DIR, '*.py')))
ANSIBLE_DOC = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
if not os.path.exists(ANSIBLE_DOC):
    ANSIBLE_DOC = shutil.which('ansible-doc') or ANSIBLE_DOC


def compare_options(doc_options, spec, where):
    """Assert that documented options and an argument_spec (or suboption spec) describe the same keys."""
    assert set(doc_options) == set(spec), '%s: documented %s, argument_spec %s' % (
        where, sorted(doc_options), sorted(spec))
    for name, entry in spec.items():
        doc = doc_options[name]
        path = '%s.%s' % (where, name)
        assert doc.get('description'), '%s has no description' % path
        assert doc.get('type', 'str') == entry.get('type', 'str'), path
        assert bool(doc.get('required', False)) == bool(entry.get('required', False)), path
        assert doc.get('default') == entry.get('default'), path
        assert doc.get('elements') == entry.get('elements'), path
        assert doc.get('choices') == entry.get('choices'), path
        if entry.get('options') or doc.get('suboptions'):
            compare_options(doc.get('suboptions') or {}, entry.get('options') or {}, path)


@pytest.mark.parametrize('module', MODULES, ids=lambda m: m.__name__)
def test_documentation_matches_argument_spec(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc['module'] == module.__name__
    assert doc['short_description']
    compare_options(doc['options'], module.ARGUMENT_SPEC, module.__name__)
    assert doc['attributes']['check_mode']['support'] == 'full'


@pytest.mark.parametrize('module', MODULES, ids=lambda m: m.__name__)
def test_examples_and_return_parse(module):
    examples = yaml.safe_load(module.EXAMPLES)
    assert isinstance(examples, list) and examples
    for task in examples:
        assert module.__name__ in task or any(k.endswith('.' + module.__name__) for k in task) \
            or 'ansible.builtin.debug' in task or 'ansible.builtin.command' in task
        if module.__name__ in task:
            assert set(task[module.__name__]) <= set(module.ARGUMENT_SPEC)
    returned = yaml.safe_load(module.RETURN)
    for key, entry in returned.items():
        assert entry.get('description'), key
        assert entry.get('type'), key
        assert entry.get('returned'), key


def test_every_library_module_is_checked_here():
    assert LIBRARY_MODULES == sorted(m.__name__ for m in MODULES)


@pytest.mark.parametrize('name', LIBRARY_MODULES)
def test_ansible_doc_renders_the_module(name):
    """`ansible-doc -M library <module>` (what a user reads) renders the module's page and exits 0,
    and its JSON form (-j) lists exactly the options of the module's ARGUMENT_SPEC."""
    def ansible_doc(*args):
        return subprocess.run([ANSIBLE_DOC, '-M', 'library'] + list(args) + [name], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    text = ansible_doc()
    assert text.returncode == 0, text.stderr
    assert name in text.stdout and 'OPTIONS' in text.stdout, text.stdout
    as_json = ansible_doc('-j')
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)[name]['doc']
    assert doc['filename'] == os.path.join(LIBRARY_DIR, name + '.py')
    assert set(doc['options']) == set(importlib.import_module(name).ARGUMENT_SPEC)


@pytest.mark.parametrize('path', [
    os.path.join(MODULE_UTILS_DIR, 'saf_ray.py'),
    os.path.join(LIBRARY_DIR, 'saf_mlx_probe.py'),
    os.path.join(LIBRARY_DIR, 'saf_ray_membership.py'),
    os.path.join(LIBRARY_DIR, 'saf_tailscale_check.py'),
    os.path.join(REPO_ROOT, 'tests', 'doubles', 'bin', 'tailscale'),
])
def test_sources_parse_as_python_3_9(path):
    """The nodes run these under Python 3.9 (the Macs' /usr/bin/python3 runs saf_tailscale_check and stands
    in for the fake CLI's python3): no match statements, no 3.10+ syntax."""
    with open(path) as handle:
        source = handle.read()
    tree = ast.parse(source, filename=path, feature_version=(3, 9))
    assert not any(isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
                   and isinstance(node.left, ast.Name) and node.left.id in ('str', 'int', 'float', 'None')
                   for node in ast.walk(tree)), 'X | Y type unions need Python 3.10'
