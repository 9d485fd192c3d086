# -*- coding: utf-8 -*-
"""Module tests of library/saf_mlx_probe.py with a fake cluster (no Ray on the controller)."""

from __future__ import annotations

import json

import pytest
import yaml

from ansible.module_utils import basic

import saf_mlx_probe
from ansible.module_utils import saf_ray
from ansible.module_utils.saf_ray import ConnectError, TaskFailed, TaskTimeout

from fake_ray_cluster import FakeRayCluster, make_node, node_id
from module_harness import patch_exit_fail, run_module  # noqa: F401  (patch_exit_fail is a fixture)

# ansible-core's own exit_json/fail_json, before any test patches them (one test needs the real encoder).
_REAL_EXIT_JSON = basic.AnsibleModule.exit_json
_REAL_FAIL_JSON = basic.AnsibleModule.fail_json

ALPHA_ID = node_id('a1')
BETA_OLD_ID = node_id('b0')
BETA_ID = node_id('b1')
GAMMA_ID = node_id('c1')

BASE_ARGS = {
    'gcs_address': '192.0.2.1:6379',
    'driver_node_ip': '192.0.2.1',
    'expected_hostname': 'BETA.local',
    'host': 'beta',
}


def cluster_nodes():
    """ALPHA (head node) and BETA (worker node) after a BETA restart: a dead BETA entry is still listed."""
    return [
        make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', cpu=4.0, head=True),
        make_node(BETA_OLD_ID, '192.0.2.2', 'BETA.local', alive=False),
        make_node(BETA_ID, '192.0.2.2', 'BETA.local', cpu=4.0),
    ]


def task_report(**overrides):
    """What saf_ray.mlx_matmul_task returns on BETA's GPU."""
    report = {
        'hostname': 'BETA.local',
        'node_id': BETA_ID,
        'device': 'Device(gpu, 0)',
        'device_kind': 'gpu',
        'versions': {'python': '3.9.18', 'ray': '2.49.2', 'mlx': '0.29.1'},
        'matrix_size': 1024,
        'iterations': 5,
        'seconds': [0.0101, 0.0100, 0.0100, 0.0099, 0.0102],
        'median_seconds': 0.01,
        'gflops': 214.7483648,
        'checked': 16,
        'max_abs_error': 1.2e-5,
        'error_bound': 2.0e-3,
        'gamma_n': 6.103888e-05,
        'max_error_ratio': 0.006,
        'failed_entries': 0,
        'bad_entries': [],
        'product_ok': True,
        'working_set_bytes': 72 << 30,
    }
    report.update(overrides)
    return report


@pytest.fixture
def fake_cluster(monkeypatch, patch_exit_fail):
    """Patch connect() to hand out a FakeRayCluster (TEST DOUBLE); return a setter and the connect calls."""
    state = {'cluster': FakeRayCluster(cluster_nodes(), report=task_report()), 'connects': []}

    def fake_connect(gcs_address, driver_node_ip, timeout):
        state['connects'].append((gcs_address, driver_node_ip, timeout))
        return state['cluster']

    monkeypatch.setattr(saf_mlx_probe, 'connect', fake_connect)
    monkeypatch.setattr(saf_mlx_probe, 'import_ray', lambda: object())
    return state


def run(args):
    """Run the module's main() with BASE_ARGS updated by ``args``; return (failed, result)."""
    return run_module(saf_mlx_probe.main, dict(BASE_ARGS, **args))


def test_success_returns_passed_and_fields(fake_cluster):
    failed, result = run({'require_gpu': True})
    assert failed is False
    assert result['changed'] is False
    assert result['passed'] is True
    assert result['host'] == 'beta'
    assert result['expected_hostname'] == 'BETA.local'
    assert result['executed_on'] == 'BETA.local'
    assert result['node_id'] == result['target_node_id'] == BETA_ID
    assert result['node_address'] == '192.0.2.2'
    assert result['device'] == 'Device(gpu, 0)' and result['device_kind'] == 'gpu'
    assert result['versions'] == {'python': '3.9.18', 'ray': '2.49.2', 'mlx': '0.29.1'}
    assert result['matrix_size'] == 1024 and result['iterations'] == 5
    assert result['seconds'] == [0.0101, 0.0100, 0.0100, 0.0099, 0.0102]
    assert result['median_seconds'] == 0.01
    assert result['gflops'] == 214.7483648
    assert result['max_abs_error'] == 1.2e-5 and result['error_bound'] == 2.0e-3
    assert [n['node_id'] for n in result['alive_nodes']] == [ALPHA_ID, BETA_ID]
    cluster = fake_cluster['cluster']
    assert len(cluster.submitted) == 1
    submitted = cluster.submitted[0]
    assert submitted['func'] is saf_ray.mlx_matmul_task
    assert submitted['node_id'] == BETA_ID  # the Alive entry, not the dead one
    assert submitted['num_cpus'] == 1
    assert submitted['args'][:3] == (1024, 5, 16)
    assert 0 < submitted['timeout'] <= 120
    assert cluster.shutdown_calls == 1
    assert fake_cluster['connects'] == [('192.0.2.1:6379', '192.0.2.1', 120.0)]


def test_success_result_keys_are_documented(fake_cluster):
    failed, result = run({})
    assert failed is False
    documented = set(yaml.safe_load(saf_mlx_probe.RETURN))
    assert set(result) - {'changed', 'invocation'} <= documented


def test_select_by_node_address(fake_cluster):
    failed, result = run({'node_address': '192.0.2.2', 'expected_hostname': 'beta'})
    assert failed is False
    assert fake_cluster['cluster'].submitted[0]['node_id'] == BETA_ID


def test_options_are_passed_to_the_task(fake_cluster):
    failed, result = run({'matrix_size': 256, 'iterations': 3, 'sample': 4, 'timeout': 30})
    assert failed is False
    submitted = fake_cluster['cluster'].submitted[0]
    assert submitted['args'][:3] == (256, 3, 4)
    assert submitted['timeout'] <= 30


def test_mismatched_node_id_fails(fake_cluster):
    fake_cluster['cluster'].report = task_report(node_id=GAMMA_ID)
    failed, result = run({})
    assert failed is True
    assert result['msg'].startswith('beta: ')
    assert GAMMA_ID in result['msg'] and BETA_ID in result['msg']
    assert result['passed'] is False
    assert fake_cluster['cluster'].shutdown_calls == 1


def test_mismatched_hostname_fails_naming_both(fake_cluster):
    fake_cluster['cluster'].report = task_report(hostname='gamma.local')
    failed, result = run({})
    assert failed is True
    assert result['msg'].startswith('beta: ')
    assert "'gamma.local'" in result['msg'] and "'BETA.local'" in result['msg']
    assert result['executed_on'] == 'gamma.local'
    assert result['passed'] is False


def test_hostname_matches_after_normalisation(fake_cluster):
    fake_cluster['cluster'].report = task_report(hostname='beta')
    failed, result = run({'expected_hostname': 'BETA.local'})
    assert failed is False
    assert result['executed_on'] == 'beta'


def test_gpu_required_but_cpu_fails(fake_cluster):
    fake_cluster['cluster'].report = task_report(device='Device(cpu, 0)', device_kind='cpu')
    failed, result = run({'require_gpu': True})
    assert failed is True
    assert result['msg'].startswith('beta: ')
    assert 'Device(cpu, 0)' in result['msg'] and 'require_gpu' in result['msg']


def test_cpu_is_fine_when_gpu_not_required(fake_cluster):
    fake_cluster['cluster'].report = task_report(device='Device(cpu, 0)', device_kind='cpu')
    failed, result = run({})
    assert failed is False
    assert result['passed'] is True and result['device_kind'] == 'cpu'


def test_wrong_product_fails(fake_cluster):
    fake_cluster['cluster'].report = task_report(product_ok=False, failed_entries=3, max_abs_error=1.0)
    failed, result = run({})
    assert failed is True
    assert 'failed its check' in result['msg'] and '3 of 16' in result['msg']


def test_check_mode_selects_target_and_submits_nothing(fake_cluster):
    failed, result = run({'_ansible_check_mode': True})
    assert failed is False
    assert result['changed'] is False
    assert result['target_node_id'] == BETA_ID
    assert result['node_address'] == '192.0.2.2'
    assert 'passed' not in result and 'gflops' not in result
    assert fake_cluster['cluster'].submitted == []
    assert fake_cluster['cluster'].shutdown_calls == 1


def test_check_mode_still_fails_when_target_missing(fake_cluster):
    failed, result = run({'_ansible_check_mode': True, 'expected_hostname': 'delta.local', 'host': 'delta'})
    assert failed is True
    assert result['msg'].startswith('delta: ')
    assert fake_cluster['cluster'].submitted == []


def test_target_only_dead_fails_listing_live_nodes(fake_cluster):
    nodes = cluster_nodes()
    del nodes[2]  # only BETA's dead entry is left
    fake_cluster['cluster'] = FakeRayCluster(nodes, report=task_report())
    failed, result = run({})
    assert failed is True
    assert result['msg'].startswith('beta: ')
    assert '192.0.2.1 ALPHA.local %s' % ALPHA_ID in result['msg']
    assert fake_cluster['cluster'].submitted == []


def test_malformed_node_id_is_never_submitted(fake_cluster):
    nodes = [make_node('BAD', '192.0.2.2', 'BETA.local')]
    fake_cluster['cluster'] = FakeRayCluster(nodes, report=task_report())
    failed, result = run({})
    assert failed is True
    assert "'BAD'" in result['msg']
    assert fake_cluster['cluster'].submitted == []


def test_timeout_fails_with_resources(fake_cluster):
    cluster = FakeRayCluster(cluster_nodes(), error=TaskTimeout('late'), available={'memory': 1.0e9})
    fake_cluster['cluster'] = cluster
    failed, result = run({'timeout': 5})
    assert failed is True
    assert result['msg'].startswith('beta: ')
    assert 'did not finish within 5 s' in result['msg']
    assert 'CPU 0 of 4' in result['msg'] and "{'memory': 1000000000.0}" in result['msg']
    assert cluster.shutdown_calls == 1


def test_task_failure_fails(fake_cluster):
    fake_cluster['cluster'] = FakeRayCluster(cluster_nodes(), error=TaskFailed('ModuleNotFoundError: mlx'))
    failed, result = run({})
    assert failed is True
    assert result['msg'].startswith('beta: ') and 'ModuleNotFoundError: mlx' in result['msg']


def test_connect_error_names_host(fake_cluster, monkeypatch):
    def refuse(gcs_address, driver_node_ip, timeout):
        raise ConnectError('Ray GCS at 192.0.2.1:6379 is not reachable over TCP after 3.0 s')

    monkeypatch.setattr(saf_mlx_probe, 'connect', refuse)
    failed, result = run({'timeout': 3})
    assert failed is True
    assert result['msg'].startswith('beta: cannot connect')
    assert '192.0.2.1:6379' in result['msg']


def test_missing_ray(fake_cluster, monkeypatch):
    def no_ray():
        raise ImportError('No module named ray')

    monkeypatch.setattr(saf_mlx_probe, 'import_ray', no_ray)
    failed, result = run({})
    assert failed is True
    assert 'Failed to import the required Python library (ray)' in result['msg']
    assert result['msg'].startswith('beta: ')
    assert fake_cluster['connects'] == []


@pytest.mark.parametrize('args, fragment', [
    ({'iterations': 0}, 'iterations must be >= 1, got 0'),
    ({'matrix_size': 0}, 'matrix_size must be >= 1, got 0'),
    ({'sample': 0}, 'sample must be >= 1, got 0'),
    ({'timeout': 0}, 'timeout must be > 0'),
    ({'min_working_set_bytes': -1}, 'min_working_set_bytes must be >= 0, got -1'),
])
def test_bad_option_values(fake_cluster, args, fragment):
    failed, result = run(args)
    assert failed is True
    assert fragment in result['msg'] and result['msg'].startswith('beta: ')
    assert fake_cluster['connects'] == []


def test_host_defaults_to_expected_hostname(fake_cluster):
    args = dict(BASE_ARGS)
    del args['host']
    failed, result = run_module(saf_mlx_probe.main, args)
    assert failed is False
    assert result['host'] == 'BETA.local'


def test_required_options(patch_exit_fail):
    failed, result = run_module(saf_mlx_probe.main, {})
    assert failed is True
    assert 'missing required arguments' in result['msg']
    for name in ('gcs_address', 'driver_node_ip'):
        assert name in result['msg']
    failed, result = run_module(saf_mlx_probe.main, {'gcs_address': '192.0.2.1:6379', 'driver_node_ip': '192.0.2.1'})
    assert failed is True
    assert 'one of the following is required: workers, expected_hostname' in result['msg']


# ----------------------------------------------------------------- several workers, one wait

def three_node_cluster():
    """ALPHA (head node), BETA and GAMMA (worker nodes), all Alive."""
    return [
        make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', cpu=4.0, head=True),
        make_node(BETA_ID, '192.0.2.2', 'BETA.local', cpu=4.0),
        make_node(GAMMA_ID, '192.0.2.3', 'GAMMA.local', cpu=4.0),
    ]


def report_of(node):
    """The task report each worker gives: its own hostname and node ID."""
    hostname = {BETA_ID: 'BETA.local', GAMMA_ID: 'GAMMA.local'}[node]
    return task_report(hostname=hostname, node_id=node, device='Device(cpu, 0)', device_kind='cpu')


WORKERS = [
    {'host': 'beta', 'expected_hostname': 'BETA.local', 'node_address': '192.0.2.2'},
    {'host': 'gamma', 'expected_hostname': 'GAMMA.local', 'node_address': '192.0.2.3'},
]


def run_workers(args=None, workers=WORKERS):
    return run_module(saf_mlx_probe.main, dict({'gcs_address': '192.0.2.1:6379', 'driver_node_ip': '192.0.2.1',
                                                 'workers': workers}, **(args or {})))


def test_workers_are_probed_in_one_batch_with_a_row_each(fake_cluster):
    cluster = FakeRayCluster(three_node_cluster(), report=report_of)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'timeout': 30})
    assert failed is False
    assert result['passed'] is True
    assert [row['host'] for row in result['workers']] == ['beta', 'gamma']
    assert [row['executed_on'] for row in result['workers']] == ['BETA.local', 'GAMMA.local']
    assert [row['node_id'] for row in result['workers']] == [BETA_ID, GAMMA_ID]
    assert all(row['passed'] and 'msg' not in row for row in result['workers'])
    assert cluster.many_calls == 1  # every task submitted before the one wait
    assert [call['node_id'] for call in cluster.submitted] == [BETA_ID, GAMMA_ID]
    assert fake_cluster['connects'] == [('192.0.2.1:6379', '192.0.2.1', 30.0)]  # one driver connection
    assert cluster.shutdown_calls == 1
    assert 'host' not in result  # the per-target fields are in the rows


def test_one_failing_worker_fails_the_module_naming_only_it(fake_cluster):
    def report(node):
        return report_of(node) if node == BETA_ID else task_report(hostname='BETA.local', node_id=GAMMA_ID)

    fake_cluster['cluster'] = FakeRayCluster(three_node_cluster(), report=report)
    failed, result = run_workers()
    assert failed is True
    assert result['passed'] is False
    assert result['msg'].startswith('gamma: MLX probe failed') and ';' not in result['msg']  # gamma's alone
    beta, gamma = result['workers']
    assert beta['passed'] is True and gamma['passed'] is False
    assert gamma['msg'] == result['msg']


def test_a_worker_without_a_node_does_not_stop_the_others(fake_cluster):
    cluster = FakeRayCluster(three_node_cluster()[:2], report=report_of)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers()
    assert failed is True
    assert result['msg'].startswith('gamma: cannot choose the Ray node to probe')
    assert [call['node_id'] for call in cluster.submitted] == [BETA_ID]
    assert result['workers'][0]['passed'] is True and 'target_node_id' not in result['workers'][1]


def test_a_late_worker_is_cancelled_and_named_with_its_free_resources(fake_cluster):
    cluster = FakeRayCluster(three_node_cluster(), report=report_of, available={'memory': 1.0e9},
                             error=lambda node: TaskTimeout('late') if node == GAMMA_ID else None)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'timeout': 5})
    assert failed is True
    assert result['msg'].startswith('gamma: the MLX probe task did not finish within 5 s on Ray node ' + GAMMA_ID)
    assert 'CPU 0 of 4' in result['msg']
    assert result['workers'][0]['passed'] is True


def test_connect_error_fails_every_worker_naming_them(fake_cluster, monkeypatch):
    def refuse(gcs_address, driver_node_ip, timeout):
        raise ConnectError('Ray GCS at 192.0.2.1:6379 is not reachable over TCP after 3.0 s')

    monkeypatch.setattr(saf_mlx_probe, 'connect', refuse)
    failed, result = run_workers()
    assert failed is True
    assert result['msg'].startswith('beta, gamma: cannot connect')
    assert [row['msg'] for row in result['workers']] == [result['msg']] * 2
    assert [row['passed'] for row in result['workers']] == [False, False]


def test_check_mode_selects_every_worker_and_submits_nothing(fake_cluster):
    cluster = FakeRayCluster(three_node_cluster(), report=report_of)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'_ansible_check_mode': True})
    assert failed is False
    assert cluster.submitted == []
    assert [row['target_node_id'] for row in result['workers']] == [BETA_ID, GAMMA_ID]


@pytest.mark.parametrize('args, workers, fragment', [
    ({'expected_hostname': 'BETA.local'}, WORKERS, 'parameters are mutually exclusive: workers|expected_hostname'),
    ({}, [], 'workers must list at least one worker node, got an empty list'),
    ({}, WORKERS + WORKERS[:1], 'workers lists beta more than once'),
    ({}, [{'host': 'beta'}], 'missing required arguments: expected_hostname'),
])
def test_bad_worker_lists_are_refused(fake_cluster, args, workers, fragment):
    failed, result = run_workers(args, workers=workers)
    assert failed is True
    assert fragment in result['msg']
    assert fake_cluster['connects'] == []


# ----------------------------------------------------------------- the size the GFLOPS are measured at (issue 16 h)

def test_growth_options_reach_the_task_and_default_to_a_fixed_size(fake_cluster):
    failed, result = run({})
    assert failed is False
    assert fake_cluster['cluster'].submitted[0]['args'][4:] == (0, 1073741824)  # min_seconds 0: N as given
    failed, result = run({'min_seconds': 0.02, 'max_matrix_bytes': 805306368})
    assert failed is False
    assert fake_cluster['cluster'].submitted[-1]['args'][4:] == (0.02, 805306368)


def test_the_size_used_and_how_it_was_reached_are_returned(fake_cluster):
    sizing = {'start': 1024, 'min_seconds': 0.02, 'max_bytes': 1073741824, 'matrix_bytes': 805306368,
              'stopped_by': 'floor', 'trials': [{'matrix_size': 1024, 'seconds': 0.0004},
                                                {'matrix_size': 8192, 'seconds': 0.09}]}
    fake_cluster['cluster'].report = task_report(matrix_size=8192, sizing=sizing)
    failed, result = run({'min_seconds': 0.02})
    assert failed is False
    assert result['matrix_size'] == 8192 and result['sizing'] == sizing
    documented = yaml.safe_load(saf_mlx_probe.RETURN)
    assert set(sizing) == set(documented['sizing']['contains'])


@pytest.mark.parametrize('args, fragment', [
    ({'matrix_size': 16384}, 'matrix_size 16384 needs 3221225472 bytes for A, B and C (3 x 4 x N**2, float32), '
                             'above max_matrix_bytes 1073741824'),
    ({'matrix_size': 1024, 'max_matrix_bytes': 1000}, 'above max_matrix_bytes 1000'),
    ({'min_seconds': -1}, 'min_seconds must be a number of seconds >= 0, got -1'),
    ({'gpu_resource': 'GPU'}, "gpu_resource must name a custom Ray resource"),
    ({'gpu_resource': 'node:192.0.2.2'}, "gpu_resource must name a custom Ray resource"),
])
def test_bad_growth_and_resource_options(fake_cluster, args, fragment):
    failed, result = run(args)
    assert failed is True
    assert result['msg'].startswith('beta: ') and fragment in result['msg']
    assert fake_cluster['connects'] == []


def test_a_timeout_while_growing_says_so(fake_cluster):
    fake_cluster['cluster'] = FakeRayCluster(cluster_nodes(), error=TaskTimeout('late'), available={'CPU': 3.0})
    failed, result = run({'timeout': 5, 'min_seconds': 0.02})
    assert failed is True
    assert 'matmul (from 1024x1024, doubling while one product took under 0.02 s, up to 1073741824 bytes)' \
        in result['msg']


# ----------------------------------------------------------------- the GPU as a Ray resource (issue 16 i)

def gpu_cluster(gamma_gpu=True):
    """ALPHA, BETA and GAMMA, each started with --resources='{"metal_gpu": 1}' (GAMMA optionally not)."""
    return [
        make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', cpu=4.0, head=True, extra={'metal_gpu': 1.0}),
        make_node(BETA_ID, '192.0.2.2', 'BETA.local', cpu=4.0, extra={'metal_gpu': 1.0}),
        make_node(GAMMA_ID, '192.0.2.3', 'GAMMA.local', cpu=4.0, extra={'metal_gpu': 1.0} if gamma_gpu else None),
    ]


def test_each_task_asks_for_one_cpu_and_the_gpu_resource(fake_cluster):
    cluster = FakeRayCluster(gpu_cluster(), report=report_of)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'gpu_resource': 'metal_gpu'})
    assert failed is False
    assert [(call['num_cpus'], call['resources']) for call in cluster.submitted] == [(1, {'metal_gpu': 1})] * 2
    assert [row['node_resources']['metal_gpu'] for row in result['workers']] == [1.0, 1.0]
    assert {node['node_id']: node['resources'].get('metal_gpu') for node in result['alive_nodes']} == \
        {ALPHA_ID: 1.0, BETA_ID: 1.0, GAMMA_ID: 1.0}


@pytest.mark.parametrize('args', [{}, {'gpu_resource': ''}], ids=['omitted', 'empty'])
def test_without_a_gpu_resource_only_a_cpu_is_asked_for(fake_cluster, args):
    failed, result = run(args)
    assert failed is False
    assert fake_cluster['cluster'].submitted[0]['resources'] is None


def test_a_node_without_the_gpu_resource_fails_at_once_naming_node_and_resource(fake_cluster):
    cluster = FakeRayCluster(gpu_cluster(gamma_gpu=False), report=report_of)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'gpu_resource': 'metal_gpu', 'timeout': 600})
    assert failed is True
    assert result['msg'].startswith("gamma: cannot run the MLX probe task there: Ray node %s (192.0.2.3, "
                                    "GAMMA.local) offers no 'metal_gpu' resource, wanted 1" % GAMMA_ID)
    assert '--resources=\'{"metal_gpu": 1}\'' in result['msg'] and 'CPU 4' in result['msg']
    assert [call['node_id'] for call in cluster.submitted] == [BETA_ID]  # gamma's task never submitted
    beta, gamma = result['workers']
    assert beta['passed'] is True and gamma['passed'] is False and 'metal_gpu' not in gamma['node_resources']


def test_check_mode_fails_a_node_without_the_gpu_resource_too(fake_cluster):
    cluster = FakeRayCluster(gpu_cluster(gamma_gpu=False), report=report_of)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'gpu_resource': 'metal_gpu', '_ansible_check_mode': True})
    assert failed is True and result['msg'].startswith('gamma: cannot run the MLX probe task there')
    assert cluster.submitted == []


def test_a_busy_gpu_is_named_when_the_task_times_out(fake_cluster):
    cluster = FakeRayCluster(gpu_cluster(), report=report_of, available={'CPU': 3.0, 'memory': 1.0e9},
                             error=lambda node: TaskTimeout('late') if node == GAMMA_ID else None)
    fake_cluster['cluster'] = cluster
    failed, result = run_workers({'gpu_resource': 'metal_gpu', 'timeout': 5})
    assert failed is True
    assert 'no free resources for num_cpus=1 and metal_gpu=1' in result['msg']
    assert 'CPU 3 of 4, metal_gpu 0 of 1' in result['msg']


# ----------------------------------------------------------------- a worker process that dies (lab finding 1)

def test_a_dead_worker_is_flagged_with_the_drivers_job_id(fake_cluster):
    died = TaskFailed('its worker process died: WorkerCrashedError: The worker died unexpectedly while executing '
                      'this task. Check python-core-worker-*.log files for more information.',
                      error_type='WorkerCrashedError', worker_died=True)
    fake_cluster['cluster'] = FakeRayCluster(three_node_cluster(), report=report_of,
                                             error=lambda node: died if node == GAMMA_ID else None)
    failed, result = run_workers()
    assert failed is True
    assert result['job_id'] == '0d000000'
    beta, gamma = result['workers']
    assert gamma['worker_died'] is True and gamma['error_type'] == 'WorkerCrashedError'
    assert gamma['msg'].startswith('gamma: the MLX probe task on Ray node %s (192.0.2.3) failed: its worker '
                                   'process died: WorkerCrashedError' % GAMMA_ID)
    assert 'worker_died' not in beta
    documented = yaml.safe_load(saf_mlx_probe.RETURN)
    assert {'job_id', 'error_type', 'worker_died', 'node_resources'} <= set(documented)


# ----------------------------------------------------------------- node IDs of another type, and the unexpected (lab finding 2)

from fake_ray_cluster import FakeNodeID  # noqa: E402


def node_id_object_cluster():
    """ALPHA and BETA whose NodeID is a ray.NodeID-like object instead of its hex string."""
    return [make_node(FakeNodeID(ALPHA_ID), '192.0.2.1', 'ALPHA.local', cpu=4.0, head=True),
            make_node(FakeNodeID(BETA_ID), '192.0.2.2', 'BETA.local', cpu=4.0)]


def test_node_id_objects_are_probed_and_returned_as_hex(fake_cluster):
    """Today's code refused BETA ('Ray node ID must be a string ... got NodeID(...)') and returned the objects."""
    cluster = FakeRayCluster(node_id_object_cluster(), report=task_report(node_id=FakeNodeID(BETA_ID)))
    fake_cluster['cluster'] = cluster
    failed, result = run({})
    assert failed is False, result['msg']
    assert result['passed'] is True
    assert result['target_node_id'] == result['node_id'] == BETA_ID
    assert [node['node_id'] for node in result['alive_nodes']] == [ALPHA_ID, BETA_ID]
    assert cluster.submitted[0]['node_id'] == BETA_ID
    json.dumps(result)  # what Ansible must be able to send back


def run_with_ansibles_own_exit(capsys):
    """Run main() with ansible-core's real exit_json/fail_json (not the harness's): return what it printed,
    parsed as JSON. Raises whatever main() raises instead of exiting (today's code: TypeError)."""
    from unittest.mock import patch
    from module_harness import set_module_args
    with patch.multiple(basic.AnsibleModule, exit_json=_REAL_EXIT_JSON, fail_json=_REAL_FAIL_JSON):
        with set_module_args(dict(BASE_ARGS)):
            with pytest.raises(SystemExit):
                saf_mlx_probe.main()
    return json.loads(capsys.readouterr().out)


def test_the_real_exit_json_gets_json_with_node_id_objects(fake_cluster, capsys):
    """Today's code: BETA refused and alive_nodes holding NodeID objects, on which ansible-core's encoder
    raised TypeError ('Value of unknown type'): MODULE FAILURE, no JSON."""
    fake_cluster['cluster'] = FakeRayCluster(node_id_object_cluster(), report=task_report(node_id=FakeNodeID(BETA_ID)))
    printed = run_with_ansibles_own_exit(capsys)
    assert printed['passed'] is True and printed.get('failed') is not True
    assert [node['node_id'] for node in printed['alive_nodes']] == [ALPHA_ID, BETA_ID]


class VersionObject(object):
    """A version reported as an object (e.g. packaging.version.Version), not a string."""

    def __str__(self):
        return '0.29.1'


def test_the_real_exit_json_gets_json_whatever_the_task_returns(fake_cluster, capsys):
    fake_cluster['cluster'].report = task_report(versions={'python': '3.9.18', 'ray': '2.49.2', 'mlx': VersionObject()})
    printed = run_with_ansibles_own_exit(capsys)
    assert printed['versions']['mlx'] == '0.29.1'


def test_an_unexpected_error_is_a_failed_result_naming_the_host(fake_cluster):
    def broken_nodes():
        raise TypeError("'NodeID' object is not subscriptable")

    cluster = fake_cluster['cluster']
    cluster.nodes = broken_nodes
    failed, result = run({})
    assert failed is True
    assert result['msg'] == ("beta: the MLX probe stopped on an unexpected error: TypeError: "
                             "'NodeID' object is not subscriptable")
    assert 'Traceback (most recent call last)' in result['exception'] and 'broken_nodes' in result['exception']
    assert cluster.shutdown_calls == 1  # the driver still disconnected


def test_an_unexpected_error_names_every_worker(fake_cluster, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError('boom')

    monkeypatch.setattr(saf_mlx_probe, 'check_probe_report', explode)
    fake_cluster['cluster'] = FakeRayCluster(three_node_cluster(), report=report_of)
    failed, result = run_workers()
    assert failed is True
    assert result['msg'] == 'beta, gamma: the MLX probe stopped on an unexpected error: RuntimeError: boom'
    assert fake_cluster['cluster'].shutdown_calls == 1


def test_working_set_at_or_above_the_minimum_passes_and_is_reported(fake_cluster):
    failed, result = run({'min_working_set_bytes': 64 << 30})
    assert failed is False and result['passed'] is True
    assert result['working_set_bytes'] == 72 << 30
    assert result['working_set'] == {'verdict': 'passed',
                                     'reason': 'MLX recommends a working set of 72.0 GiB, wanted at least 64.0 GiB'}


def test_working_set_below_the_minimum_fails_naming_both_figures_and_the_fix(fake_cluster):
    failed, result = run({'min_working_set_bytes': 80 << 30})
    assert failed is True and result['passed'] is False
    assert result['working_set']['verdict'] == 'failed'
    assert result['msg'] == ('beta: MLX probe failed: MLX recommends a working set of 72.0 GiB, wanted at least 80.0 GiB: '
                             'raise the GPU wired-memory limit (gpu_memory_wired_limit_mb, roles/gpu_memory)')


@pytest.mark.parametrize('working_set, minimum, reason', [
    (None, 64 << 30, 'MLX reports no Metal device here (its CPU backend), so no working set'),
    (72 << 30, 0, 'no minimum set (saf_verify_min_working_set_gib is 0)'),
])
def test_working_set_with_nothing_to_compare_is_skipped_not_passed(fake_cluster, working_set, minimum, reason):
    fake_cluster['cluster'].report = task_report(working_set_bytes=working_set, device='Device(cpu, 0)', device_kind='cpu')
    failed, result = run({'min_working_set_bytes': minimum})
    assert failed is False
    assert result['working_set'] == {'verdict': 'skipped', 'reason': reason}


class _Metal:
    def __init__(self, available, info=None):
        self.available, self.info = available, info or {}

    def is_available(self):
        return self.available

    def device_info(self):
        return self.info


class _MLX:
    def __init__(self, metal):
        self.metal = metal


def test_metal_working_set_reads_mlx_device_info_or_none_without_metal():
    assert saf_ray.metal_working_set(_MLX(_Metal(True, {'max_recommended_working_set_size': 77309411328}))) == 77309411328
    assert saf_ray.metal_working_set(_MLX(_Metal(False))) is None
    assert saf_ray.metal_working_set(object()) is None  # an MLX without mx.metal
