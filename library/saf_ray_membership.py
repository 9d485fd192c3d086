#!/usr/bin/python
# -*- coding: utf-8 -*-
# SAF: Ansible provisioning of a Ray 2.49.2 + MLX 0.29.1 cluster.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: saf_ray_membership
short_description: Wait until the expected Ray nodes are Alive in the GCS and stay Alive
description:
  - Connects to the Ray cluster as a driver (run it on the Ray head node, under the runtime venv's Python,
    C(saf_runtime_venv/bin/python) in the roles, with C(saf_ray_environment) as its environment) and polls C(ray.nodes) until every expected node IP is an Alive node, and has stayed the only Alive
    node at that address, with the same node ID, for O(settle) seconds (at least two polls). This catches
    a raylet that registers and dies seconds later (seen with Ray 2.49.2 when its dashboard agent dies).
  - Dead entries that Ray keeps for a restarted node (same address and hostname, old node ID) are ignored.
  - On timeout it fails, naming the missing inventory hosts and their addresses, and returns RV(missing)
    so the playbook can fetch the raylet log tail from those hosts.
  - The module only reads cluster state; RV(ignore:changed) is always false and it runs in check mode too.
  - An error the module did not foresee fails it naming this host and the driver address, with the exception's
    text and traceback (and every expected node in RV(missing)), instead of leaving no result.
version_added: "1.0.0"
author:
  - SAF maintainers
requirements:
  - ray == 2.49.2 on the host running the module (the Ray head node)
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode runs it unchanged.
  diff_mode:
    support: none
options:
  gcs_address:
    description:
      - Address of the Ray GCS on the head node, as V(host:port) (e.g. V(192.0.2.1:6380); SAF's GCS port is
        C(saf_ray_gcs_port), 6380, not Ray's default 6379). Never V(auto).
    type: str
    required: true
  driver_node_ip:
    description:
      - IP address of the node the module runs on, as the Ray node was started with (C(ray start --node-ip-address)).
      - Passed to C(ray.init) as C(_node_ip_address); must be an address of this host.
    type: str
    required: true
  expected:
    description:
      - The nodes that must be members of the cluster, head node included if it should be checked.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Inventory hostname of the node, used in messages and in RV(missing).
        type: str
        required: true
      address:
        description: Ray node IP of the node (C(NodeManagerAddress) in C(ray.nodes)).
        type: str
        required: true
  timeout:
    description:
      - Overall time limit in seconds, covering the connection and the wait.
    type: float
    default: 60
  settle:
    description:
      - Seconds every expected node must stay Alive, with the same node ID, before it counts. V(0) accepts
        the first poll that shows it Alive. Must be less than O(timeout).
    type: float
    default: 5
notes:
  - A raylet that exits cleanly is marked dead by the GCS within a second; one that is killed stays Alive for
    11-15 s, until the GCS health check gives up (Ray 2.49.2 defaults, observed). A worker node restarted
    within that window shows two Alive entries at its address; the module waits until one remains.
  - On timeout the message gives each missing host's state, one of C(never Alive), C(was Alive, then not)
    (a raylet that died after C(ray start) printed success), C(Alive for less than the settle period), or
    C(2 Alive entries at this address), followed by every live node as C(address hostname node_id).
"""

EXAMPLES = r"""
# On the Ray head node (a play on ray_head), as roles/ray_node runs it (tasks/wait.yml): under the
# runtime venv's Python (the Ray driver must match the cluster's Python and Ray), with the environment
# every SAF driver gets. saf_node_ip comes from the inventory, the rest from the saf role's defaults.
- name: Wait until every node of saf_cluster is an Alive Ray node, and stays Alive
  saf_ray_membership:
    gcs_address: "{{ saf_node_ip }}:{{ saf_ray_gcs_port }}"
    driver_node_ip: "{{ saf_node_ip }}"
    expected: >-
      {{ dict(groups['saf_cluster'] | zip(groups['saf_cluster'] | map('extract', hostvars, 'saf_node_ip')))
         | dict2items(key_name='host', value_name='address') }}
    timeout: "{{ saf_ray_start_timeout }}"
    settle: "{{ saf_ray_settle_seconds }}"
  vars:
    ansible_python_interpreter: "{{ saf_runtime_venv }}/bin/python"
  environment: "{{ saf_ray_environment }}"
  register: membership
  ignore_errors: true

- name: Name the nodes that did not join (their raylet logs are under saf_ray_temp_dir)
  ansible.builtin.debug:
    msg: "{{ item.0 }} ({{ item.1 }}) is not an Alive Ray node; see its raylet*.out under {{ saf_ray_temp_dir }}"
  loop: "{{ membership.missing | zip(membership.missing_addresses) | list }}"

- name: Ask the GCS once which worker nodes it lists as Alive (no settle period, no failure)
  saf_ray_membership:
    gcs_address: "{{ saf_node_ip }}:{{ saf_ray_gcs_port }}"
    driver_node_ip: "{{ saf_node_ip }}"
    expected: >-
      {{ dict(groups['ray_workers'] | zip(groups['ray_workers'] | map('extract', hostvars, 'saf_node_ip')))
         | dict2items(key_name='host', value_name='address') }}
    timeout: 5
    settle: 0
  vars:
    ansible_python_interpreter: "{{ saf_runtime_venv }}/bin/python"
  environment: "{{ saf_ray_environment }}"
  register: gcs_view
  failed_when: false
"""

RETURN = r"""
nodes:
  description: One entry per expected node, in the order of O(expected).
  returned: success
  type: list
  elements: dict
  contains:
    host:
      description: Inventory hostname (from O(expected)).
      type: str
      sample: beta
    address:
      description: Ray node IP.
      type: str
      sample: 192.0.2.2
    node_id:
      description: Ray node ID of the Alive node at that address (56 lowercase hex characters).
      type: str
      sample: 3c783e1b09f5a4b1f0c2e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2
    hostname:
      description: Hostname Ray records for the node (C(NodeManagerHostname)), raw.
      type: str
      sample: BETA.local
    alive:
      description: Whether the node is Alive (always true on success).
      type: bool
      sample: true
alive:
  description: All Alive Ray nodes at the last poll, expected or not.
  returned: when connected
  type: list
  elements: dict
  contains:
    node_id:
      description: Ray node ID.
      type: str
    address:
      description: Ray node IP.
      type: str
    hostname:
      description: Hostname recorded by Ray.
      type: str
    alive:
      description: Always true here.
      type: bool
    is_head:
      description: Whether this is the head node.
      type: bool
    resources:
      description: Total logical resources of the node (C(CPU), C(GPU), C(memory) in bytes, ...).
      type: dict
missing:
  description:
    - Inventory hostnames of the expected nodes that were not Alive (or not for O(settle) seconds) in time.
    - Empty on success.
  returned: always
  type: list
  elements: str
  sample: [beta]
missing_addresses:
  description: Ray node IPs of RV(missing), in the same order.
  returned: always
  type: list
  elements: str
  sample: [192.0.2.2]
dropped:
  description: Inventory hostnames of expected nodes that were seen Alive and later were not, or changed node ID.
  returned: when connected
  type: list
  elements: str
  sample: []
elapsed:
  description: Seconds spent waiting for the nodes (after connecting).
  returned: when connected
  type: float
  sample: 5.02
connect_seconds:
  description: Seconds taken to connect the driver (TCP check of the GCS plus C(ray.init)).
  returned: when connected
  type: float
  sample: 0.45
exception:
  description: Traceback of an error the module did not foresee (it then fails, naming this host).
  returned: on an unforeseen error
  type: str
"""

import socket
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.saf_ray import (
    AmbiguousTarget,
    ConnectError,
    TargetNotFound,
    alive_nodes,
    connect,
    describe_nodes,
    import_ray,
    node_summary,
    select_target,
    stdout_to_stderr,
    wait_for_nodes,
)

ARGUMENT_SPEC = dict(
    gcs_address=dict(type='str', required=True),
    driver_node_ip=dict(type='str', required=True),
    expected=dict(
        type='list',
        elements='dict',
        required=True,
        options=dict(
            host=dict(type='str', required=True),
            address=dict(type='str', required=True),
        ),
    ),
    timeout=dict(type='float', default=60),
    settle=dict(type='float', default=5),
)

#: Seconds between two ``ray.nodes()`` polls.
POLL_SECONDS = 1.0


def _label(expected):
    """``'beta (192.0.2.2), gamma (192.0.2.3)'`` for a list of expected entries."""
    return ', '.join('%s (%s)' % (item['host'], item['address']) for item in expected)


def _check_params(params):
    """Return a failure message for invalid options, or None."""
    expected = params['expected']
    if not expected:
        return 'expected must list at least one node, got an empty list'
    seen = {}
    for item in expected:
        if item['address'] in seen:
            return ('expected lists address %s twice (hosts %s and %s); wanted one Ray node per address'
                    % (item['address'], seen[item['address']], item['host']))
        seen[item['address']] = item['host']
    if not params['timeout'] > 0:
        return '%s: timeout must be > 0 seconds, got %s' % (_label(expected), params['timeout'])
    if params['settle'] < 0 or params['settle'] >= params['timeout']:
        return ('%s: settle must be >= 0 and less than timeout (%s s), got %s'
                % (_label(expected), params['timeout'], params['settle']))
    return None


def run_membership(module):
    """Do the work; return ``(error_message_or_None, result_dict)``. Always disconnects."""
    params = module.params
    expected = params['expected'] or []
    addresses = [item['address'] for item in expected]
    result = dict(changed=False, missing=[item['host'] for item in expected], missing_addresses=addresses)

    problem = _check_params(params)
    if problem:
        return problem, result

    try:
        import_ray()
    except ImportError:
        result['exception'] = traceback.format_exc()
        return '%s: %s' % (_label(expected), missing_required_lib('ray')), result

    timeout = params['timeout']
    deadline = time.monotonic() + timeout
    cluster = None
    try:
        try:
            cluster = connect(params['gcs_address'], params['driver_node_ip'], timeout)
        except (ConnectError, ValueError) as exc:
            return ('%s: cannot check membership, no connection to the Ray cluster at %s as a driver on %s: %s'
                    % (_label(expected), params['gcs_address'], params['driver_node_ip'], exc)), result
        result['connect_seconds'] = cluster.connect_seconds

        remaining = max(deadline - time.monotonic(), 0.0)
        waited = wait_for_nodes(addresses, remaining, poll=POLL_SECONDS, settle=params['settle'],
                                nodes_fn=cluster.nodes)
        nodes = waited['nodes']
        live = alive_nodes(nodes)
        by_address = dict((item['address'], item['host']) for item in expected)
        missing = [item for item in expected if item['address'] in waited['missing']]
        result.update(
            alive=[node_summary(node) for node in live],
            missing=[item['host'] for item in missing],
            missing_addresses=[item['address'] for item in missing],
            dropped=[by_address[address] for address in waited['dropped']],
            elapsed=waited['elapsed'],
        )
        if missing:
            detail = []
            for item in missing:
                here = [node for node in live if node.get('NodeManagerAddress') == item['address']]
                if len(here) > 1:
                    state = ('%d Alive entries at this address (a node restarted moments ago whose old entry '
                             'the GCS has not yet declared dead)' % len(here))
                elif here:
                    state = 'Alive for less than the %g s settle period' % params['settle']
                elif item['address'] in waited['dropped']:
                    state = 'was Alive, then not (raylet died after start?)'
                else:
                    state = 'never Alive'
                detail.append('%s (%s): %s' % (item['host'], item['address'], state))
            return ('%s: not Alive Ray node%s in the GCS at %s after %g s; %s. Live nodes (address hostname '
                    'node_id): %s'
                    % (', '.join(item['host'] for item in missing), '' if len(missing) == 1 else 's',
                       params['gcs_address'], timeout, '; '.join(detail), describe_nodes(live))), result

        members = []
        for item in expected:
            try:
                node = select_target(nodes, address=item['address'])
            except (TargetNotFound, AmbiguousTarget) as exc:
                return '%s (%s): %s' % (item['host'], item['address'], exc), result
            members.append(dict(
                host=item['host'],
                address=item['address'],
                node_id=node.get('NodeID'),
                hostname=node.get('NodeManagerHostname'),
                alive=node.get('Alive') is True,
            ))
        result['nodes'] = members
        return None, result
    finally:
        if cluster is not None:
            cluster.shutdown()


def unexpected_failure(params, exc):
    """The failed result for an exception run_membership did not foresee: ``msg`` names this host
    (its hostname; the module is not told its inventory name) and the driver address, every expected
    node counts as missing (the roles read RV(missing) after a failure), ``exception`` is the traceback."""
    expected = [item for item in params.get('expected') or [] if isinstance(item, dict)]
    return dict(
        msg='%s (driver %s): saf_ray_membership stopped on an unexpected error: %s: %s'
            % (socket.gethostname(), params.get('driver_node_ip'), type(exc).__name__, exc),
        exception=traceback.format_exc(),
        changed=False,
        missing=[item.get('host') for item in expected],
        missing_addresses=[item.get('address') for item in expected],
    )


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        with stdout_to_stderr():  # Ray prints cluster errors to stdout; keep it for the JSON result
            error, result = run_membership(module)
    except Exception as exc:  # anything unforeseen: a failed result naming the host, never a MODULE FAILURE
        module.fail_json(**unexpected_failure(module.params, exc))
    if error:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
