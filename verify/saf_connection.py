"""testinfra over plain SSH with an inventory whose connection variables are templates.

testinfra's ``ansible://`` backend builds its ssh command line from ``ansible-inventory --list``,
which prints ``ansible_host: "{{ saf_node_ip }}"`` and ``{{ inventory_dir }}/../../.lab/...``
as template text; without ``--force-ansible`` ssh then gets that text. ``--force-ansible`` runs
one ad hoc ``ansible`` per command instead, about 1.2 s each (`make verify-hosts` on the lab:
90 s against 16 s this way). ``install()`` makes testinfra read the values Ansible itself would
use, so specs and lab tests keep the inventory as the one source of connection settings.
"""

from __future__ import annotations

from testinfra.utils import ansible_runner

# The variables testinfra turns into an ssh command line (testinfra.utils.ansible_runner.get_ansible_host).
CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_connection",
                   "ansible_ssh_private_key_file", "ansible_private_key_file",
                   "ansible_ssh_common_args", "ansible_ssh_extra_args",
                   "ansible_become", "ansible_become_user")


def resolve_connection_vars(source: str) -> dict:
    """{host: {connection variable: value}} for every host of the inventory ``source``, templated
    by Ansible itself (InventoryManager, VariableManager, Templar), so ``{{ saf_node_ip }}`` and
    ``{{ inventory_dir }}`` become what a play would use. ``ansible-inventory --list``, which
    testinfra reads, leaves them as template text, which ssh cannot use.

    Raises ansible.errors.AnsibleError naming the variable when a template cannot be filled."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[source])
    variables = VariableManager(loader=loader, inventory=inventory)
    resolved = {}
    for node in inventory.get_hosts():
        hostvars = variables.get_vars(host=node)
        templar = Templar(loader=loader, variables=hostvars)
        resolved[node.name] = {key: templar.template(hostvars[key]) for key in CONNECTION_VARS if key in hostvars}
    return resolved


def inventory_with_connection(original):
    """testinfra's inventory reader (``get_ansible_inventory``), wrapped: each host's connection
    variables replaced by their resolved values (resolve_connection_vars)."""
    def read(config, inventory_file):
        listing = original(config, inventory_file)
        if inventory_file:
            for node, values in resolve_connection_vars(inventory_file).items():
                listing.get("_meta", {}).get("hostvars", {}).setdefault(node, {}).update(values)
        return listing
    return read


def ssh_host(source: str, name: str):
    """A testinfra host for the inventory ``source``'s host ``name`` over plain SSH, its connection
    variables resolved at this call (resolve_connection_vars), so an inventory that changes between
    calls (the lab's grows a GAMMA) is read again: testinfra's ansible backend keeps the first
    inventory it read for the whole session. The ssh command line is testinfra's own
    (``get_ansible_host``, with ansible.cfg's ssh_args).

    Raises KeyError naming the host and the inventory when the inventory has no such host."""
    resolved = resolve_connection_vars(source)
    if name not in resolved:
        raise KeyError(f"{name} is not a host of the inventory {source} (hosts: {', '.join(sorted(resolved))})")
    inventory = {"_meta": {"hostvars": {name: resolved[name]}}, "all": {"hosts": [name]}}
    return ansible_runner.get_ansible_host(ansible_runner.get_ansible_config(), inventory, name)


def install() -> None:
    """Make testinfra's ansible backend read resolved connection variables (idempotent)."""
    if not getattr(ansible_runner.get_ansible_inventory, "saf_resolved", False):
        reader = inventory_with_connection(ansible_runner.get_ansible_inventory)
        reader.saf_resolved = True
        ansible_runner.get_ansible_inventory = reader
