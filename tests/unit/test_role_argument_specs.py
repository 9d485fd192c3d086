"""Every role's meta/argument_specs.yml mirrors its defaults/main.yml, and Ansible enforces it.

Static checks, per role: the ``main`` entry point lists exactly the role's defaults plus the
inventory inputs it documents (``INPUTS``); every literal default is the spec's default and passes
the spec's own type check (Ansible's ``ArgumentSpecValidator``, what the validation task runs); a
templated default has no spec default and a description that says what it comes to.

Behaviour, through ``ansible-playbook`` over a local connection
(tests/unit/playbooks/role_argument_specs.yml): the shipped defaults pass every entry point's
validation with and without facts, and a value of the wrong type or a missing required input
fails at the role's start, in the validation task, naming the variable, before any task of the
role runs.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "main.yml").is_file())
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "role_argument_specs.yml"

# Inputs an entry point documents beyond the role's defaults: inventory variables without a
# default (saf_node_ip, saf_node_hostname, saf_tailscale_name, saf_ray_auth_token) and what
# site.yml or another role hands over (ray_node_wait_restart_dropped, python_runtime_interpreter).
INPUTS = {
    "cluster_firewall": {"main": {"saf_node_ip"}},
    "cluster_verify": {"main": {"saf_node_ip"}},
    "inventory_check": {"main": {"saf_node_ip", "saf_node_hostname"}},
    "parity_gate": {"interpreter.yml": {"python_runtime_interpreter"}},
    "ray_node": {"main": {"saf_node_ip", "saf_ray_auth_token"},
                 "wait.yml": {"saf_node_ip", "ray_node_wait_restart_dropped"},
                 "restart.yml": {"saf_node_ip"}},
    "ray_port_exposure": {"main": {"saf_node_ip"}},
    "runtime_switch": {"switch.yml": {"runtime_switch_to"}, "link.yml": {"runtime_switch_link_to"}},
    "tailscale_network": {"main": {"saf_node_ip", "saf_tailscale_name"}},
}
# Only these may be required: every other input has a default or may be left out.
REQUIRED = {"saf_node_ip", "saf_node_hostname"}


@functools.lru_cache(maxsize=None)
def load(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def defaults(role: str) -> dict:
    return load(REPO / "roles" / role / "defaults" / "main.yml") or {}


def specs(role: str) -> dict:
    path = REPO / "roles" / role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"{role}: no meta/argument_specs.yml"
    return load(path)["argument_specs"]


def is_template(value) -> bool:
    return isinstance(value, str) and "{{" in value


def type_errors(name: str, option: dict, value) -> list[str]:
    """What Ansible's role validation says of ``value`` for ``option`` (required dropped)."""
    option = {key: val for key, val in option.items() if key != "required"}
    return ArgumentSpecValidator({name: option}).validate({name: value}).error_messages


def test_every_role_is_checked():
    assert "saf" in ROLES and "ray_node" in ROLES, ROLES
    assert ROLES == sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_main_lists_the_defaults_and_documented_inputs(role):
    entry_points = specs(role)
    assert "main" in entry_points, f"{role}: no argument spec for the main entry point"
    options = set(entry_points["main"].get("options") or {})
    wanted = set(defaults(role)) | INPUTS.get(role, {}).get("main", set())
    assert options == wanted, (f"{role}: in the spec only {sorted(options - wanted)}, "
                               f"not in the spec {sorted(wanted - options)}")


@pytest.mark.parametrize("role", ROLES)
def test_other_entry_points_list_only_defaults_and_documented_inputs(role):
    for entry, spec in specs(role).items():
        options = set(spec.get("options") or {})
        extra = options - set(defaults(role)) - INPUTS.get(role, {}).get(entry, set())
        assert not extra, f"{role} {entry}: options that are neither defaults nor documented inputs: {sorted(extra)}"


@pytest.mark.parametrize("role", ROLES)
def test_entry_points_are_task_files(role):
    tasks = REPO / "roles" / role / "tasks"
    for entry in specs(role):
        if entry == "main":
            continue  # saf has no tasks: its main entry point validates and does nothing else
        assert (tasks / entry).is_file(), f"{role}: entry point {entry} has no tasks/{entry}"


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_are_the_spec_defaults(role):
    for entry, spec in specs(role).items():
        options = spec.get("options") or {}
        for name, value in defaults(role).items():
            if name not in options:
                continue
            option = options[name]
            where = f"{role} {entry} {name}"
            if is_template(value):
                assert "default" not in option, f"{where}: templated default {value!r} copied into the spec"
                assert "default" in str(option.get("description")).lower(), \
                    f"{where}: the description must say what the templated default comes to"
            elif value is None:
                assert option.get("default") is None, f"{where}: defaults/main.yml has null"
                assert "null" in str(option.get("description")), f"{where}: the description must say null is allowed"
            else:
                assert "default" in option and option["default"] == value, \
                    f"{where}: spec default {option.get('default')!r}, defaults/main.yml {value!r}"
                # YAML would read 3.10 as a float: versions stay strings in both files.
                assert type(option["default"]) is type(value), where


@pytest.mark.parametrize("role", ROLES)
def test_each_type_accepts_the_literal_default(role):
    for entry, spec in specs(role).items():
        for name, option in (spec.get("options") or {}).items():
            assert option.get("type") in {"str", "int", "bool", "list", "dict", "path", "raw"}, f"{role} {entry} {name}"
            assert option.get("description"), f"{role} {entry} {name}: no description"
            if option.get("type") == "list":
                assert option.get("elements"), f"{role} {entry} {name}: a list names its elements"
            value = defaults(role).get(name)
            if name in defaults(role) and not is_template(value):
                assert type_errors(name, option, value) == [], f"{role} {entry} {name}"
            if "choices" in option and "default" in option:
                assert option["default"] in option["choices"], f"{role} {entry} {name}"


@pytest.mark.parametrize("role", ROLES)
def test_required_only_without_a_default(role):
    for entry, spec in specs(role).items():
        for name, option in (spec.get("options") or {}).items():
            if option.get("required"):
                assert name in REQUIRED and name not in defaults(role) and "default" not in option, \
                    f"{role} {entry} {name}"
            if name not in defaults(role):
                assert "default" not in option, \
                    f"{role} {entry} {name}: a spec default sets nothing; only defaults/main.yml does"


def test_a_variable_has_one_type_everywhere():
    seen = {}
    for role in ROLES:
        for entry, spec in specs(role).items():
            for name, option in (spec.get("options") or {}).items():
                kind = (option.get("type"), option.get("elements"))
                assert seen.setdefault(name, kind) == kind, f"{role} {entry} {name}: {kind} elsewhere {seen[name]}"


def test_the_playbooks_entry_points_have_specs():
    """Every tasks_from the playbooks and roles use (a literal one) has its own spec."""
    files = [REPO / "site.yml", REPO / "verify.yml", *sorted((REPO / "playbooks").glob("*.yml")),
             *sorted((REPO / "roles").glob("*/tasks/*.yml"))]
    used = set()
    for path in files:
        for match in re.finditer(r"name: (\w+)\n\s+tasks_from: ([\w.-]+)\n", path.read_text()):
            used.add(match.groups())
    assert ("ray_node", "wait.yml") in used and ("cluster_firewall", "remove.yml") in used, used
    missing = sorted(f"{role} {entry}" for role, entry in used if entry not in specs(role))
    assert not missing, missing


def test_type_check_itself():
    """The validator the role's first task runs rejects the values the behaviour tests give."""
    port = specs("saf")["main"]["options"]["saf_ray_gcs_port"]
    assert type_errors("saf_ray_gcs_port", port, "6390") == []
    assert "unable to convert to int" in type_errors("saf_ray_gcs_port", port, "not-a-port")[0]
    manager = specs("saf")["main"]["options"]["saf_ray_service_manager"]
    assert "must be one of: launchd, systemd, direct" in type_errors("saf_ray_service_manager", manager, "cron")[0]


# --- behaviour: ansible-playbook over a local connection --------------------------------------

HOSTS = {"HEAD": {"saf_node_ip": "198.18.0.11", "saf_node_hostname": "HEAD.local"},
         "WORKER": {"saf_node_ip": "198.18.0.12", "saf_node_hostname": "WORKER.local"}}


def run(tmp_path: Path, entries, extra_vars=None, hostvars=None, gather_facts=False, only_validation=False):
    """Include ``entries`` ([(role, entry)]) on HEAD and WORKER; returns (returncode, output).

    ``hostvars`` ({host: {name: value or None}}) changes the inventory, None removing a variable.
    The controller's own paths are never the role's: saf_root_dir and saf_ray_temp_dir point into
    ``tmp_path``, in case a validation let a role go on.
    """
    hosts = {}
    for host, values in HOSTS.items():
        merged = dict(values, **(hostvars or {}).get(host, {}))
        hosts[host] = {key: value for key, value in merged.items() if value is not None}
    inventory = {"saf_cluster": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "saf_root_dir": str(tmp_path / "saf"), "saf_ray_temp_dir": str(tmp_path / "saf" / "ray")},
        "children": {"ray_head": {"hosts": {"HEAD": hosts["HEAD"]}},
                     "ray_workers": {"hosts": {"WORKER": hosts["WORKER"]}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    variables = {"saf_test_entries": [{"role": role, "entry": entry} for role, entry in entries],
                 "saf_test_gather_facts": gather_facts, **(extra_vars or {})}
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(variables))
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), "-e", f"@{tmp_path / 'extra.yml'}",
            str(PLAYBOOK)]
    if only_validation:
        argv += ["--tags", "saf_test_include"]
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def all_entry_points(without=()):
    return [(role, entry) for role in ROLES if role not in without for entry in specs(role)]


@pytest.mark.parametrize("gather_facts", [False, True], ids=["without facts", "with facts"])
def test_the_defaults_pass_every_validation(tmp_path, gather_facts):
    # python_runtime only runs in plays that gather facts: its pyenv root default is the user's HOME.
    entries = all_entry_points(without=() if gather_facts else ("python_runtime",))
    code, out = run(tmp_path, entries, gather_facts=gather_facts, only_validation=True)
    assert code == 0, out
    validated = set(re.findall(r"TASK \[(\w+) : Validating arguments against arg spec '([\w.-]+)'", out))
    assert validated == set(entries), sorted(set(entries) - validated)


def failed_task(out: str) -> str:
    """The header of the task that failed first."""
    before = out[:out.index("fatal: [")]
    return re.findall(r"^TASK \[(.*?)\] \*", before, re.MULTILINE)[-1]


def assert_no_task_of(role: str, out: str) -> None:
    ran = [task for task in re.findall(rf"^TASK \[{role} : (.*?)\] \*", out, re.MULTILINE)
           if not task.startswith("Validating arguments")]
    assert ran == [], f"{role} ran {ran} before failing:\n{out}"


WRONG = {
    "port that is no number": (("inventory_check", "main"), {"saf_ray_gcs_port": "not-a-port"}, "saf", "main",
                               "argument 'saf_ray_gcs_port' is of type str and we were unable to convert to int"),
    "unknown service manager": (("inventory_check", "main"), {"saf_ray_service_manager": "cron"}, "saf", "main",
                                "value of saf_ray_service_manager must be one of: launchd, systemd, direct, got: cron"),
    "power settings as a string": (("power_settings", "main"), {"power_settings_wanted": "sleep never"},
                                   "power_settings", "main",
                                   "argument 'power_settings_wanted' is of type str and we were unable to convert"
                                   " to dict"),
    "log lines as words": (("ray_node", "wait.yml"), {"ray_node_log_lines": "forty"}, "ray_node", "wait.yml",
                           "argument 'ray_node_log_lines' is of type str and we were unable to convert to int"),
}


@pytest.mark.parametrize("case", WRONG, ids=list(WRONG))
def test_a_wrong_type_fails_at_the_roles_start(tmp_path, case):
    entry, extra_vars, failing_role, failing_entry, message = WRONG[case]
    code, out = run(tmp_path, [entry], extra_vars=extra_vars)
    assert code != 0, out
    assert failed_task(out).startswith(f"{failing_role} : Validating arguments against arg spec '{failing_entry}'"), out
    assert message in out, out
    assert_no_task_of(entry[0], out)


MISSING = {
    "node hostname": (("inventory_check", "main"), "saf_node_hostname"),
    "node address": (("ray_node", "wait.yml"), "saf_node_ip"),
}


@pytest.mark.parametrize("case", MISSING, ids=list(MISSING))
def test_a_missing_required_variable_fails_naming_it(tmp_path, case):
    entry, name = MISSING[case]
    code, out = run(tmp_path, [entry], hostvars={host: {name: None} for host in HOSTS})
    assert code != 0, out
    role, entry_point = entry
    assert failed_task(out).startswith(f"{role} : Validating arguments against arg spec '{entry_point}'"), out
    assert f"missing required arguments: {name}" in out, out
    assert sorted(re.findall(r"^fatal: \[(\w+)\]", out, re.MULTILINE)) == sorted(HOSTS), out
    assert_no_task_of(role, out)
