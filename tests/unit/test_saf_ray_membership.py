# -*- coding: utf-8 -*-
"""Module tests of library/saf_ray_membership.py with a fake cluster (no Ray on the controller)."""

from __future__ import annotations

import pytest
import yaml

import saf_ray_membership
from ansible.module_utils.saf_ray import ConnectError

from fake_ray_cluster import FakeRayCluster, make_node, node_id
from module_harness import patch_exit_fail, run_module  # noqa: F401  (patch_exit_fail is a fixture)

ALPHA_ID = node_id('a1')
BETA_OLD_ID = node_id('b0')
BETA_ID = node_id('b1')

EXPECTED = [{'host': 'alpha', 'address': '192.0.2.1'}, {'host': 'beta', 'address': '192.0.2.2'}]
BASE_ARGS = {
    'gcs_address': '192.0.2.1:6379',
    'driver_node_ip': '192.0.2.1',
    'expected': EXPECTED,
    'timeout': 2,
    'settle': 0,
}

HEAD = make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', head=True)
BETA_DEAD = make_node(BETA_OLD_ID, '192.0.2.2', 'BETA.local', alive=False)
BETA = make_node(BETA_ID, '192.0.2.2', 'BETA.local')


@pytest.fixture
def fake_cluster(monkeypatch, patch_exit_fail):
    """Patch connect() to hand out a FakeRayCluster (TEST DOUBLE); poll fast."""
    state = {'cluster': FakeRayCluster([HEAD, BETA_DEAD, BETA]), 'connects': []}

    def fake_connect(gcs_address, driver_node_ip, timeout):
        state['connects'].append((gcs_address, driver_node_ip, timeout))
        return state['cluster']

    monkeypatch.setattr(saf_ray_membership, 'connect', fake_connect)
    monkeypatch.setattr(saf_ray_membership, 'import_ray', lambda: object())
    monkeypatch.setattr(saf_ray_membership, 'POLL_SECONDS', 0.05)
    return state


def run(args):
    """Run the module's main() with BASE_ARGS updated by ``args``; return (failed, result)."""
    return run_module(saf_ray_membership.main, dict(BASE_ARGS, **args))


def test_all_alive_with_a_restarted_worker(fake_cluster):
    failed, result = run({})
    assert failed is False
    assert result['changed'] is False
    assert result['missing'] == [] and result['missing_addresses'] == []
    assert result['nodes'] == [
        {'host': 'alpha', 'address': '192.0.2.1', 'node_id': ALPHA_ID, 'hostname': 'ALPHA.local', 'alive': True},
        {'host': 'beta', 'address': '192.0.2.2', 'node_id': BETA_ID, 'hostname': 'BETA.local', 'alive': True},
    ]
    assert [n['node_id'] for n in result['alive']] == [ALPHA_ID, BETA_ID]
    assert fake_cluster['cluster'].shutdown_calls == 1
    assert fake_cluster['connects'] == [('192.0.2.1:6379', '192.0.2.1', 2.0)]


def test_result_keys_are_documented(fake_cluster):
    failed, result = run({})
    assert failed is False
    assert set(result) - {'changed', 'invocation'} <= set(yaml.safe_load(saf_ray_membership.RETURN))


def test_settle_requires_two_polls(fake_cluster):
    failed, result = run({'settle': 0.1})
    assert failed is False
    assert fake_cluster['cluster'].nodes_calls >= 2


def test_missing_worker_fails_naming_host_and_address(fake_cluster):
    fake_cluster['cluster'] = FakeRayCluster([HEAD, BETA_DEAD])
    failed, result = run({'timeout': 0.3})
    assert failed is True
    assert result['msg'].startswith('beta: ')
    assert 'beta (192.0.2.2): never Alive' in result['msg']
    assert '192.0.2.1 ALPHA.local %s' % ALPHA_ID in result['msg']
    assert result['missing'] == ['beta']
    assert result['missing_addresses'] == ['192.0.2.2']
    assert fake_cluster['cluster'].shutdown_calls == 1


def test_raylet_dying_after_start_fails(fake_cluster):
    dead_again = make_node(BETA_ID, '192.0.2.2', 'BETA.local', alive=False)
    fake_cluster['cluster'] = FakeRayCluster([[HEAD, BETA], [HEAD, dead_again]])
    failed, result = run({'timeout': 0.3, 'settle': 0.2})
    assert failed is True
    assert 'beta (192.0.2.2): was Alive, then not' in result['msg']
    assert result['missing'] == ['beta']
    assert result['dropped'] == ['beta']


def test_check_mode_runs_the_read(fake_cluster):
    failed, result = run({'_ansible_check_mode': True})
    assert failed is False
    assert [n['node_id'] for n in result['nodes']] == [ALPHA_ID, BETA_ID]
    assert fake_cluster['cluster'].nodes_calls >= 1


def test_connect_error_names_expected_hosts(fake_cluster, monkeypatch):
    def refuse(gcs_address, driver_node_ip, timeout):
        raise ConnectError('Ray GCS at 192.0.2.1:6379 is not reachable over TCP after 2.0 s')

    monkeypatch.setattr(saf_ray_membership, 'connect', refuse)
    failed, result = run({})
    assert failed is True
    assert result['msg'].startswith('alpha (192.0.2.1), beta (192.0.2.2): ')
    assert result['missing'] == ['alpha', 'beta']


def test_missing_ray(fake_cluster, monkeypatch):
    def no_ray():
        raise ImportError('No module named ray')

    monkeypatch.setattr(saf_ray_membership, 'import_ray', no_ray)
    failed, result = run({})
    assert failed is True
    assert 'Failed to import the required Python library (ray)' in result['msg']
    assert fake_cluster['connects'] == []


@pytest.mark.parametrize('args, fragment', [
    ({'settle': 5, 'timeout': 5}, 'settle must be >= 0 and less than timeout'),
    ({'settle': -1}, 'settle must be >= 0'),
    ({'timeout': 0}, 'timeout must be > 0'),
    ({'expected': []}, 'at least one node'),
    ({'expected': [{'host': 'beta', 'address': '192.0.2.2'}, {'host': 'gamma', 'address': '192.0.2.2'}]},
     'address 192.0.2.2 twice (hosts beta and gamma)'),
])
def test_bad_option_values(fake_cluster, args, fragment):
    failed, result = run(args)
    assert failed is True
    assert fragment in result['msg']
    assert fake_cluster['connects'] == []


def test_expected_entries_need_host_and_address(fake_cluster):
    failed, result = run({'expected': [{'host': 'beta'}]})
    assert failed is True
    assert 'address' in result['msg']
