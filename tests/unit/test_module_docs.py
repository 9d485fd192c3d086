# -*- coding: utf-8 -*-
"""DOCUMENTATION / EXAMPLES / RETURN of the SAF modules agree with their argument_spec and with the roles
(EXAMPLES name only variables the roles define, and call the modules the way the roles do), and stay Python 3.9."""

from __future__ import annotations

import ast
import glob
import importlib
import json
import os
import re
import shutil
import subprocess
import sys

import jinja2
import jinja2.meta
import jinja2.nodes
import pytest
import yaml

import saf_mlx_probe
import saf_ray_membership
import saf_tailscale_check
import saf_venv_info

MODULES = [saf_mlx_probe, saf_ray_membership, saf_tailscale_check, saf_venv_info]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY_DIR = os.path.join(REPO_ROOT, 'library')
MODULE_UTILS_DIR = os.path.join(REPO_ROOT, 'module_utils')
# Every module in library/, found by name so a new one is covered without editing this file.
LIBRARY_MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(LIBRARY_DIR, '*.py')))
ROLES_DIR = os.path.join(REPO_ROOT, 'roles')
MODULES_DOC = os.path.join(REPO_ROOT, 'docs', 'modules.md')
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
    os.path.join(LIBRARY_DIR, 'saf_venv_info.py'),
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


# --- EXAMPLES against the roles ---------------------------------------------------------------
# An example that names a variable the repo does not have (or a port it does not use) is an example
# nobody can paste. These tests take the truth from roles/, so a renamed variable fails here.

# Ansible's special variables (docs: reference_appendices/special_variables.html), the connection and
# interpreter variables an inventory or a task may set, the loop variable, and the template globals
# Ansible adds to Jinja's own (lookup, query, q, now, undef).
MAGIC_VARIABLES = frozenset({
    'ansible_check_mode', 'ansible_collection_name', 'ansible_config_file', 'ansible_dependent_role_names',
    'ansible_diff_mode', 'ansible_facts', 'ansible_forks', 'ansible_index_var', 'ansible_inventory_sources',
    'ansible_limit', 'ansible_local', 'ansible_loop', 'ansible_loop_var', 'ansible_parent_role_names',
    'ansible_parent_role_paths', 'ansible_play_batch', 'ansible_play_hosts', 'ansible_play_hosts_all',
    'ansible_play_name', 'ansible_play_role_names', 'ansible_playbook_python', 'ansible_role_name',
    'ansible_role_names', 'ansible_run_tags', 'ansible_search_path', 'ansible_skip_tags', 'ansible_verbosity',
    'ansible_version', 'group_names', 'groups', 'hostvars', 'inventory_dir', 'inventory_file',
    'inventory_hostname', 'inventory_hostname_short', 'omit', 'play_hosts', 'playbook_dir', 'role_name',
    'role_names', 'role_path', 'item',
    'ansible_connection', 'ansible_host', 'ansible_port', 'ansible_user', 'ansible_become',
    'ansible_become_user', 'ansible_python_interpreter',
    'lookup', 'query', 'q', 'now', 'undef',
})
# Task keywords whose value is a bare Jinja expression, without {{ }}.
CONDITIONAL_KEYWORDS = ('when', 'failed_when', 'changed_when', 'until')
SET_FACT = ('set_fact', 'ansible.builtin.set_fact', 'ansible.legacy.set_fact')
JINJA = jinja2.Environment()


def _load_yaml(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def _tasks(tasks):
    """Every task of a task list, blocks flattened (block, rescue and always, in order)."""
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ('block', 'rescue', 'always'):
            yield from _tasks(task.get(key))


def _role_task_files():
    return sorted(glob.glob(os.path.join(ROLES_DIR, '*', 'tasks', '**', '*.yml'), recursive=True))


def role_defined_variables():
    """Names the roles define: defaults, vars, argument_specs options, and set_fact/register in tasks."""
    names = set()
    for pattern in ('*/defaults/*.yml', '*/vars/*.yml'):
        for path in glob.glob(os.path.join(ROLES_DIR, pattern)):
            names.update(_load_yaml(path) or {})
    for path in glob.glob(os.path.join(ROLES_DIR, '*', 'meta', 'argument_specs.yml')):
        for entry in ((_load_yaml(path) or {}).get('argument_specs') or {}).values():
            names.update(entry.get('options') or {})
    for path in _role_task_files():
        for task in _tasks(_load_yaml(path)):
            if task.get('register'):
                names.add(task['register'])
            for key in SET_FACT:
                if isinstance(task.get(key), dict):
                    names.update(name for name in task[key] if name != 'cacheable')
    return names


def module_calls_in_roles(name):
    """Every task in roles/*/tasks that runs module `name` (short or FQCN-style name)."""
    return [task for path in _role_task_files() for task in _tasks(_load_yaml(path))
            if any(key == name or key.endswith('.' + name) for key in task)]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _templates(task):
    """The Jinja templates of a task: every templated string, and the bare conditionals wrapped in {{ }}."""
    for key, value in task.items():
        if key in ('block', 'rescue', 'always'):
            continue
        if key in CONDITIONAL_KEYWORDS:
            for condition in (value if isinstance(value, list) else [value]):
                if isinstance(condition, str):
                    yield '{{ %s }}' % condition
            continue
        for text in _strings(value):
            if '{{' in text or '{%' in text:
                yield text


def _is_hostvars_entry(node):
    """hostvars[<host>]"""
    return (isinstance(node, jinja2.nodes.Getitem) and isinstance(node.node, jinja2.nodes.Name)
            and node.node.name == 'hostvars')


def _const_str(node):
    return node.value if isinstance(node, jinja2.nodes.Const) and isinstance(node.value, str) else None


def template_variables(text):
    """(top-level names a template reads from its context, names it reads from another host's hostvars)."""
    tree = JINJA.parse(text)
    # find_undeclared_variables compiles the template, which wants every filter and test to exist:
    # Ansible's (dict2items, ...) are stood in for by name, as only the names read matter here.
    for node in tree.find_all(jinja2.nodes.Filter):
        JINJA.filters.setdefault(node.name, lambda value, *args, **kwargs: value)
    for node in tree.find_all(jinja2.nodes.Test):
        JINJA.tests.setdefault(node.name, lambda value, *args, **kwargs: True)
    host_names = set()
    for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Filter)):
        if isinstance(node, jinja2.nodes.Getattr) and _is_hostvars_entry(node.node):
            host_names.add(node.attr)
        elif isinstance(node, jinja2.nodes.Getitem) and _is_hostvars_entry(node.node) and _const_str(node.arg):
            host_names.add(_const_str(node.arg))
        elif isinstance(node, jinja2.nodes.Filter):
            args = node.args
            # map('extract', hostvars, 'name') and extract(hostvars, 'name')
            if node.name == 'map' and len(args) >= 3 and _const_str(args[0]) == 'extract':
                args = args[1:]
            elif node.name != 'extract':
                continue
            if len(args) >= 2 and isinstance(args[0], jinja2.nodes.Name) and args[0].name == 'hostvars' \
                    and _const_str(args[1]):
                host_names.add(_const_str(args[1]))
    return jinja2.meta.find_undeclared_variables(tree), host_names


def unknown_example_variables(examples, defined):
    """Names the EXAMPLES read that are neither defined by the roles, magic, nor registered by an example
    task so far (a task's own register counts, for its conditionals), as sorted 'task name: variable'."""
    known = set(defined) | MAGIC_VARIABLES
    unknown = set()
    for task in _tasks(examples):
        if task.get('register'):
            known.add(task['register'])
        loop_var = (task.get('loop_control') or {}).get('loop_var')
        for text in _templates(task):
            names, host_names = template_variables(text)
            for name in sorted(names - known - ({loop_var} if loop_var else set())):
                unknown.add('%s: %s' % (task.get('name'), name))
            for name in sorted(host_names - set(defined) - MAGIC_VARIABLES):
                unknown.add('%s: hostvars[...].%s' % (task.get('name'), name))
    return sorted(unknown)


def _module_tasks(module, tasks):
    return [task for task in _tasks(tasks)
            if any(key == module.__name__ or key.endswith('.' + module.__name__) for key in task)]


def _module_args(module, task):
    return next(value for key, value in task.items() if key == module.__name__ or key.endswith('.' + module.__name__))


def _how_called(task):
    """What the roles decide around a module call: the interpreter it runs under and its environment."""
    return ((task.get('vars') or {}).get('ansible_python_interpreter'), task.get('environment'))


def test_role_variables_are_collected():
    """The collector sees each kind of source (so an empty set cannot make the next tests pass)."""
    defined = role_defined_variables()
    assert {'saf_ray_gcs_port', 'saf_runtime_venv'} <= defined          # roles/saf/defaults
    assert 'ray_node_log_lines' in defined                             # roles/ray_node/defaults
    assert {'saf_node_ip', 'saf_node_hostname', 'saf_tailscale_name'} <= defined  # argument_specs
    assert {'ray_node_membership', '_cluster_verify_targets'} <= defined  # register, set_fact
    assert 'ray_head_ip' not in defined


def test_the_variable_check_flags_what_it_should():
    """unknown_example_variables on a made-up example: what it reports and what it lets through."""
    examples = yaml.safe_load("""
- name: probe
  saf_mlx_probe:
    gcs_address: "{{ ray_head_ip }}:{{ saf_ray_gcs_port }}"
    node_address: "{{ hostvars['BETA'].ray_node_ip }}"
    driver_node_ip: "{{ groups['x'] | map('extract', hostvars, 'bogus_ip') | first }}"
    workers: "{% for h in groups['ray_workers'] %}{{ hostvars[h]['saf_node_ip'] }}{% endfor %}"
  register: probe
  failed_when: probe.passed and later_result is defined
- name: show
  ansible.builtin.debug:
    msg: "{{ probe.gflops }} {{ item }}"
""")
    assert unknown_example_variables(examples, role_defined_variables()) == [
        'probe: hostvars[...].bogus_ip', 'probe: hostvars[...].ray_node_ip', 'probe: later_result',
        'probe: ray_head_ip']


@pytest.mark.parametrize('module', MODULES, ids=lambda m: m.__name__)
def test_examples_name_only_variables_the_roles_define(module):
    """Every {{ variable }} of EXAMPLES (and every hostvars[...] key) is one the roles define, a magic
    variable, or registered by an earlier example task."""
    examples = yaml.safe_load(module.EXAMPLES)
    assert isinstance(examples, list) and all(isinstance(task, dict) for task in examples)
    unknown = unknown_example_variables(examples, role_defined_variables())
    assert not unknown, 'EXAMPLES of %s name variables the roles do not define: %s' % (module.__name__, unknown)


@pytest.mark.parametrize('module', MODULES, ids=lambda m: m.__name__)
def test_examples_call_the_module_the_way_the_roles_do(module):
    """Each example task of the module runs under the interpreter, and with the environment, the roles
    give it (e.g. the runtime venv's Python for the Ray drivers; the node's own Python for Tailscale)."""
    in_roles = module_calls_in_roles(module.__name__)
    assert in_roles, 'no role in roles/ runs %s' % module.__name__
    wanted = {_how_called(task) for task in in_roles}
    examples = _module_tasks(module, yaml.safe_load(module.EXAMPLES))
    assert examples
    for task in examples:
        assert _how_called(task) in wanted, '%s: (interpreter, environment) %r, the roles use %r' % (
            task.get('name'), _how_called(task), sorted(wanted, key=repr))


@pytest.mark.parametrize('module', MODULES, ids=lambda m: m.__name__)
def test_examples_use_the_repos_gcs_port(module):
    """A literal GCS port in an example (host:6380, {{ ip }}:6380) is the repo's saf_ray_gcs_port, not Ray's
    default 6379."""
    port = _load_yaml(os.path.join(ROLES_DIR, 'saf', 'defaults', 'main.yml'))['saf_ray_gcs_port']
    for task in _module_tasks(module, yaml.safe_load(module.EXAMPLES)):
        literal_port = re.search(r':(\d+)$', _module_args(module, task).get('gcs_address') or '')
        if literal_port:
            assert literal_port.group(1) == str(port), '%s: gcs_address %s, the repo uses port %s' % (
                task.get('name'), _module_args(module, task)['gcs_address'], port)


def test_modules_doc_points_to_ansible_doc_for_every_module():
    """docs/modules.md keeps the why; options and return values are read with ansible-doc."""
    with open(MODULES_DOC) as handle:
        text = handle.read()
    for name in LIBRARY_MODULES:
        assert 'ansible-doc -M library %s' % name in text, name
