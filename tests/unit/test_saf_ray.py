# -*- coding: utf-8 -*-
"""Unit tests of the pure logic in module_utils/saf_ray.py (no Ray, no MLX on the controller)."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from ansible.module_utils import saf_ray
from ansible.module_utils.saf_ray import (
    AmbiguousTarget,
    ConnectError,
    TargetNotFound,
    TaskFailed,
    TaskTimeout,
)

from fake_ray_cluster import make_node, node_id
from fake_ray_module import install_fake_mlx, install_fake_ray

ALPHA_ID = node_id('a1')
BETA_OLD_ID = node_id('b0')
BETA_ID = node_id('b1')
GAMMA_ID = node_id('c1')


def restarted_cluster():
    """Head ALPHA plus worker BETA, restarted: BETA's dead entry is listed first."""
    return [
        make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', head=True),
        make_node(BETA_OLD_ID, '192.0.2.2', 'BETA.local', alive=False),
        make_node(BETA_ID, '192.0.2.2', 'BETA.local'),
    ]


# ----------------------------------------------------------------- hostnames

@pytest.mark.parametrize('raw, short', [
    ('BETA.local', 'beta'),
    ('beta.tailnet-1234.ts.net.', 'beta'),
    ('Beta', 'beta'),
    ('beta', 'beta'),
    ('BETA.LOCAL.', 'beta'),
    ('  beta.local  ', 'beta'),
    ('mac-studio-2.local', 'mac-studio-2'),
    ('192.0.2.2', '192.0.2.2'),
])
def test_normalise_hostname(raw, short):
    assert saf_ray.normalise_hostname(raw) == short


@pytest.mark.parametrize('bad', [None, '', '   ', '.', '..', '.local', 42])
def test_normalise_hostname_rejects_empty(bad):
    with pytest.raises(ValueError):
        saf_ray.normalise_hostname(bad)


# ----------------------------------------------------------------- node IDs

def test_validate_node_id_accepts_56_lowercase_hex():
    good = '2d456912a1b0b1a07b3cb6614ab6df4fe2d20c9222581cb2c6daeec4'
    assert saf_ray.validate_node_id(good) == good


@pytest.mark.parametrize('bad, fragment', [
    ('a' * 55, '55 characters'),
    ('a' * 57, '57 characters'),
    ('g' + 'a' * 55, 'contains g'),
    ('2D456912A1B0B1A07B3CB6614AB6DF4FE2D20C9222581CB2C6DAEEC4', 'lowercase'),
    ('f' * 56, 'Nil'),
    ('', '0 characters'),
    (None, 'must be a string'),
    (12345, 'must be a string'),
])
def test_validate_node_id_rejects(bad, fragment):
    with pytest.raises(ValueError) as excinfo:
        saf_ray.validate_node_id(bad)
    message = str(excinfo.value)
    assert fragment in message
    assert repr(bad) in message


# ----------------------------------------------------------------- node selection

def test_alive_nodes_drops_dead_entries():
    live = saf_ray.alive_nodes(restarted_cluster())
    assert [n['NodeID'] for n in live] == [ALPHA_ID, BETA_ID]


def test_select_by_address_skips_dead_duplicate_of_restarted_worker():
    target = saf_ray.select_target(restarted_cluster(), address='192.0.2.2')
    assert target['NodeID'] == BETA_ID
    assert target['Alive'] is True


def test_select_by_hostname_skips_dead_duplicate_of_restarted_worker():
    target = saf_ray.select_target(restarted_cluster(), hostname='beta.tailnet-1234.ts.net.')
    assert target['NodeID'] == BETA_ID


def test_address_and_hostname_must_both_match():
    target = saf_ray.select_target(restarted_cluster(), address='192.0.2.2', hostname='beta')
    assert target["NodeID"] == BETA_ID


def test_hostname_matching_no_live_node_lists_every_live_node():
    with pytest.raises(TargetNotFound) as excinfo:
        saf_ray.select_target(restarted_cluster(), address='192.0.2.2', hostname='GAMMA.local')
    message = str(excinfo.value)
    assert 'hostname GAMMA.local (normalised gamma)' in message
    assert '192.0.2.1 ALPHA.local' in message and '192.0.2.2 BETA.local' in message


def test_only_dead_entry_raises_target_not_found_listing_live_nodes():
    nodes = [
        make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', head=True),
        make_node(BETA_OLD_ID, '192.0.2.2', 'BETA.local', alive=False),
        make_node(GAMMA_ID, '192.0.2.3', 'gamma'),
    ]
    with pytest.raises(TargetNotFound) as excinfo:
        saf_ray.select_target(nodes, address='192.0.2.2')
    message = str(excinfo.value)
    assert '192.0.2.1 ALPHA.local %s' % ALPHA_ID in message
    assert '192.0.2.3 gamma %s' % GAMMA_ID in message
    assert '1 dead entry' in message and BETA_OLD_ID in message
    assert [n['NodeID'] for n in excinfo.value.live] == [ALPHA_ID, GAMMA_ID]


def test_unknown_hostname_raises_target_not_found():
    with pytest.raises(TargetNotFound) as excinfo:
        saf_ray.select_target(restarted_cluster(), hostname='delta')
    assert 'hostname delta' in str(excinfo.value)
    assert '192.0.2.2 BETA.local %s' % BETA_ID in str(excinfo.value)


def test_no_live_nodes_at_all():
    with pytest.raises(TargetNotFound) as excinfo:
        saf_ray.select_target([make_node(BETA_OLD_ID, '192.0.2.2', 'beta', alive=False)], hostname='beta')
    assert 'live nodes (address hostname node_id): none' in str(excinfo.value)


def test_several_alive_matches_raise_ambiguous_naming_them():
    nodes = [make_node(BETA_ID, '192.0.2.2', 'vm'), make_node(GAMMA_ID, '192.0.2.3', 'VM.local')]
    with pytest.raises(AmbiguousTarget) as excinfo:
        saf_ray.select_target(nodes, hostname='vm')
    message = str(excinfo.value)
    assert BETA_ID in message and GAMMA_ID in message
    assert len(excinfo.value.matches) == 2


def test_select_target_needs_a_criterion():
    with pytest.raises(ValueError):
        saf_ray.select_target(restarted_cluster())


def test_node_summary_shape():
    summary = saf_ray.node_summary(make_node(ALPHA_ID, '192.0.2.1', 'ALPHA.local', cpu=4.0, head=True))
    assert summary['node_id'] == ALPHA_ID
    assert summary['address'] == '192.0.2.1'
    assert summary['hostname'] == 'ALPHA.local'
    assert summary['alive'] is True
    assert summary['is_head'] is True
    assert summary['resources']['CPU'] == 4.0


# ----------------------------------------------------------------- arithmetic

def test_matmul_flops():
    assert saf_ray.matmul_flops(1) == 2
    assert saf_ray.matmul_flops(1024) == 2147483648


def test_gflops_exact_for_1024_at_10_ms():
    assert saf_ray.gflops(1024, 0.01) == 214.7483648


@pytest.mark.parametrize('seconds', [0, -1.0, 0.0, float('inf'), float('nan'), None, True])
def test_gflops_rejects_non_positive_seconds(seconds):
    with pytest.raises(ValueError):
        saf_ray.gflops(1024, seconds)


@pytest.mark.parametrize('n', [0, -3, 2.5, True])
def test_flops_rejects_bad_sizes(n):
    with pytest.raises(ValueError):
        saf_ray.matmul_flops(n)


def test_median():
    assert saf_ray.median([3.0]) == 3.0
    assert saf_ray.median([5.0, 1.0, 3.0]) == 3.0
    assert saf_ray.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        saf_ray.median([])


def test_error_bound_is_gamma_n():
    u = 2.0 ** -24
    assert saf_ray.FLOAT32_UNIT_ROUNDOFF == u
    assert saf_ray.matmul_error_bound(1) == u / (1 - u)
    assert saf_ray.matmul_error_bound(1024) == 1024 * u / (1 - 1024 * u)
    # gamma_n is slightly larger than n*u and grows with n.
    assert 1024 * u < saf_ray.matmul_error_bound(1024) < saf_ray.matmul_error_bound(2048)


@pytest.mark.parametrize('n', [0, 2 ** 24, 2 ** 25])
def test_error_bound_undefined(n):
    with pytest.raises(ValueError):
        saf_ray.matmul_error_bound(n)


def test_check_entry_exact_and_over_the_bound():
    gamma = saf_ray.matmul_error_bound(2)
    ok, error, bound, reference = saf_ray.check_entry([1.0, 2.0], [3.0, -4.0], -5.0, gamma)
    assert ok and error == 0.0 and reference == -5.0
    assert bound == gamma * 11.0
    ok, error, bound, reference = saf_ray.check_entry([1.0, 2.0], [3.0, -4.0], -5.0 + 2 * bound, gamma)
    assert not ok and error > bound


def test_check_entry_nan_fails():
    gamma = saf_ray.matmul_error_bound(2)
    ok, error, bound, reference = saf_ray.check_entry([1.0, 2.0], [3.0, 4.0], float('nan'), gamma)
    assert not ok


def test_sample_indices_deterministic_distinct_in_range():
    first = saf_ray.sample_indices(64, 16, 7)
    assert first == saf_ray.sample_indices(64, 16, 7)
    assert len(first) == 16 == len(set(first))
    assert all(0 <= i < 64 and 0 <= j < 64 for i, j in first)
    assert first == sorted(first)
    assert first != saf_ray.sample_indices(64, 16, 8)


def test_sample_indices_capped_and_validated():
    assert saf_ray.sample_indices(2, 10, 0) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert saf_ray.sample_indices(4, 0, 0) == []
    with pytest.raises(ValueError):
        saf_ray.sample_indices(0, 1, 0)
    with pytest.raises(ValueError):
        saf_ray.sample_indices(4, -1, 0)


# ----------------------------------------------------------------- the task payload (fake MLX, fake Ray)

def test_mlx_matmul_task_with_fake_mlx(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID)
    core = install_fake_mlx(monkeypatch, device='cpu')
    report = saf_ray.mlx_matmul_task(8, 3, 5, 42)
    assert report['node_id'] == BETA_ID
    assert report['hostname'] == socket.gethostname()
    assert report['device'] == 'Device(cpu, 0)'
    assert report['device_kind'] == 'cpu'
    assert report['versions']['ray'] == '2.49.2'
    assert report['versions']['mlx'] == '0.29.1'
    assert report['versions']['python']
    assert report['matrix_size'] == 8 and report['iterations'] == 3
    assert len(report['seconds']) == 3 and all(s >= 0 for s in report['seconds'])
    assert report['median_seconds'] == saf_ray.median(report['seconds'])
    assert report['checked'] == 5
    assert report['product_ok'] is True
    assert report['failed_entries'] == 0 and report['bad_entries'] == []
    assert report['max_abs_error'] <= report['error_bound'] or report['max_abs_error'] == 0.0
    assert 0.0 <= report['max_error_ratio'] <= 1.0
    assert report['gamma_n'] == saf_ray.matmul_error_bound(8)
    # inputs evaluated, one warm-up, then one eval per timed iteration
    assert core.evaluated == [2, 1, 1, 1, 1]
    import json
    json.dumps(report, allow_nan=False)  # plain, strict JSON


def test_mlx_matmul_task_detects_a_wrong_product(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID)
    n, seed = 6, 3
    every = [(i, j) for i in range(n) for j in range(n)]
    install_fake_mlx(monkeypatch, corrupt=every)
    report = saf_ray.mlx_matmul_task(n, 1, 4, seed)
    assert report['product_ok'] is False
    assert report['failed_entries'] == 4
    assert len(report['bad_entries']) == 4
    assert report['max_abs_error'] > report['error_bound']
    assert report['max_error_ratio'] > 1.0


def test_mlx_matmul_task_reports_gpu_kind(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID)
    install_fake_mlx(monkeypatch, device='gpu')
    report = saf_ray.mlx_matmul_task(2, 1, 1, 0)
    assert report['device'] == 'Device(gpu, 0)'
    assert report['device_kind'] == 'gpu'


# ----------------------------------------------------------------- verdict

def good_report(**overrides):
    report = {
        'hostname': 'BETA.local', 'node_id': BETA_ID, 'device': 'Device(gpu, 0)', 'device_kind': 'gpu',
        'matrix_size': 1024, 'checked': 16, 'max_abs_error': 1e-5, 'gamma_n': 6.1e-5,
        'failed_entries': 0, 'bad_entries': [], 'product_ok': True,
    }
    report.update(overrides)
    return report


def test_check_probe_report_passes():
    assert saf_ray.check_probe_report(good_report(), BETA_ID, 'beta', True) == []


def test_check_probe_report_names_every_problem():
    report = good_report(hostname='gamma.local', node_id=GAMMA_ID, device='Device(cpu, 0)',
                         device_kind='cpu', product_ok=False, failed_entries=2)
    problems = saf_ray.check_probe_report(report, BETA_ID, 'BETA.local', True)
    assert len(problems) == 4
    assert GAMMA_ID in problems[0] and BETA_ID in problems[0]
    assert "'gamma.local'" in problems[1] and "'BETA.local'" in problems[1]
    assert 'failed its check' in problems[2] and '2 of 16' in problems[2]
    assert 'Device(cpu, 0)' in problems[3]


def test_check_probe_report_cpu_allowed_without_require_gpu():
    report = good_report(device='Device(cpu, 0)', device_kind='cpu')
    assert saf_ray.check_probe_report(report, BETA_ID, 'beta', False) == []


# ----------------------------------------------------------------- connection helpers

@pytest.mark.parametrize('address, parsed', [
    ('192.0.2.1:6379', ('192.0.2.1', 6379)),
    (' alpha.local:6390 ', ('alpha.local', 6390)),
    ('[::1]:6379', ('::1', 6379)),
])
def test_parse_gcs_address(address, parsed):
    assert saf_ray.parse_gcs_address(address) == parsed


@pytest.mark.parametrize('address', ['auto', 'ray://192.0.2.1:10001', '192.0.2.1', '192.0.2.1:', ':6379',
                                     '192.0.2.1:0', '192.0.2.1:65536', '192.0.2.1:http', '::1:6379', '', None])
def test_parse_gcs_address_rejects(address):
    with pytest.raises(ValueError):
        saf_ray.parse_gcs_address(address)


def test_check_local_address():
    saf_ray.check_local_address('127.0.0.1')
    with pytest.raises(ConnectError) as excinfo:
        saf_ray.check_local_address('203.0.113.77')  # TEST-NET-3, not configured here
    assert '203.0.113.77' in str(excinfo.value)


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_wait_for_tcp_open_and_closed():
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    try:
        assert saf_ray.wait_for_tcp('127.0.0.1', server.getsockname()[1], 2.0) < 2.0
    finally:
        server.close()
    port = free_port()
    with pytest.raises(ConnectError) as excinfo:
        saf_ray.wait_for_tcp('127.0.0.1', port, 0.3, poll=0.1)
    assert '127.0.0.1:%d' % port in str(excinfo.value)


def test_connect_fails_fast_when_gcs_is_down(monkeypatch):
    def no_ray():
        raise AssertionError('ray must not be imported when the GCS is unreachable')

    monkeypatch.setattr(saf_ray, 'import_ray', no_ray)
    with pytest.raises(ConnectError):
        saf_ray.connect('127.0.0.1:%d' % free_port(), '127.0.0.1', timeout=0.3)
    with pytest.raises(ValueError):
        saf_ray.connect('auto', '127.0.0.1', timeout=0.3)
    with pytest.raises(ConnectError):
        saf_ray.connect('127.0.0.1:6379', '203.0.113.77', timeout=0.3)


def test_import_ray_sets_the_cluster_env_before_import(monkeypatch):
    monkeypatch.delenv('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', raising=False)
    state = install_fake_ray(monkeypatch, BETA_ID)
    ray = saf_ray.import_ray()
    assert ray is sys.modules['ray']
    assert os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] == '1'
    assert state.submitted == []


def test_stdout_to_stderr(capfd):
    print('before')
    with saf_ray.stdout_to_stderr():
        print('inside')
        os.write(1, b'raw fd 1\n')
    print('after')
    out, err = capfd.readouterr()
    assert 'before' in out and 'after' in out
    assert 'inside' not in out and 'raw fd 1' not in out
    assert 'inside' in err and 'raw fd 1' in err


# ----------------------------------------------------------------- RayCluster.run_pinned_many against a fake ray

def test_run_pinned_contract(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    (result,) = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([3.0, 1.0, 2.0],))], timeout=9.0)
    assert result == 2.0
    assert state.registered_by_value == [saf_ray]  # the function travels by value
    options = state.options[0]
    assert options['num_cpus'] == 1
    assert options['max_retries'] == 0
    assert options['scheduling_strategy'].node_id == BETA_ID
    assert options['scheduling_strategy'].soft is False
    assert [call['timeout'] for call in state.wait_calls] == [9.0]  # one bounded wait


def test_run_pinned_validates_the_node_id_before_ray_sees_it(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    with pytest.raises(ValueError):
        cluster.run_pinned_many(saf_ray.median, [('not-a-node-id', ([1.0],))])
    assert state.submitted == [] and state.options == []


def test_run_pinned_timeout_cancels_with_force(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID, time_out=True)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    (outcome,) = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],))], timeout=2.0)
    assert isinstance(outcome, TaskTimeout)
    assert len(state.cancelled) == 1 and state.cancelled[0][1] is True


GAMMA_ID = 'c1' * 28


def test_run_pinned_many_submits_every_task_before_one_bounded_wait(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    outcomes = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([3.0, 1.0, 2.0],)), (GAMMA_ID, ([5.0],))],
                                       timeout=7.0)
    assert outcomes == [2.0, 5.0]
    assert [o['scheduling_strategy'].node_id for o in state.options] == [BETA_ID, GAMMA_ID]
    assert all(o['scheduling_strategy'].soft is False and o['num_cpus'] == 1 for o in state.options)
    assert len(state.wait_calls) == 1
    assert state.wait_calls[0]['num_returns'] == 2 and state.wait_calls[0]['timeout'] == 7.0


def test_run_pinned_many_returns_each_error_and_cancels_the_late(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID, time_out=True)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    outcomes = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],)), (GAMMA_ID, ([1.0],))], timeout=2.0)
    assert [type(o) for o in outcomes] == [TaskTimeout, TaskTimeout]
    assert [force for _ref, force in state.cancelled] == [True, True]


def test_run_pinned_many_checks_every_node_id_before_submitting(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    with pytest.raises(ValueError):
        cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],)), ('not-a-node-id', ([1.0],))])
    assert state.submitted == []


@pytest.mark.parametrize('error_name', ['TaskUnschedulableError', 'RayTaskError'])
def test_run_pinned_ray_errors_become_task_failed(monkeypatch, error_name):
    install_fake_ray(monkeypatch, BETA_ID,
                     raise_on_get=lambda exceptions: getattr(exceptions, error_name)('boom'))
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    (outcome,) = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],))])
    assert isinstance(outcome, TaskFailed)
    assert 'boom' in str(outcome)


# ----------------------------------------------------------------- wait_for_nodes (fake clock)

class FakeClock(object):
    """Test double for time.monotonic/time.sleep: sleeping advances the clock."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(snapshots):
    calls = []

    def nodes():
        calls.append(1)
        return snapshots[min(len(calls), len(snapshots)) - 1]
    return nodes


def test_wait_for_nodes_settles():
    clock = FakeClock()
    nodes = [make_node(ALPHA_ID, '192.0.2.1', 'alpha', head=True), make_node(BETA_ID, '192.0.2.2', 'beta')]
    result = saf_ray.wait_for_nodes(['192.0.2.1', '192.0.2.2'], 60, poll=1.0, settle=5.0,
                                    nodes_fn=scripted([nodes]), clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] is True and result['missing'] == [] and result['dropped'] == []
    assert result['elapsed'] == 5.0 and result['polls'] == 6


def test_wait_for_nodes_without_settle_takes_one_poll():
    clock = FakeClock()
    nodes = [make_node(BETA_ID, '192.0.2.2', 'beta')]
    result = saf_ray.wait_for_nodes(['192.0.2.2'], 60, settle=0, nodes_fn=scripted([nodes]),
                                    clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] and result['polls'] == 1


def test_wait_for_nodes_ignores_dead_entry_and_waits_for_restart():
    clock = FakeClock()
    dead_only = [make_node(BETA_OLD_ID, '192.0.2.2', 'beta', alive=False)]
    restarted = dead_only + [make_node(BETA_ID, '192.0.2.2', 'beta')]
    result = saf_ray.wait_for_nodes(['192.0.2.2'], 60, poll=1.0, settle=2.0,
                                    nodes_fn=scripted([dead_only, dead_only, restarted]),
                                    clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] is True
    assert result['elapsed'] == 4.0  # alive from t=2, settled at t=4


def test_wait_for_nodes_catches_a_raylet_that_dies_after_start():
    clock = FakeClock()
    alive = [make_node(BETA_ID, '192.0.2.2', 'beta')]
    dead = [make_node(BETA_ID, '192.0.2.2', 'beta', alive=False)]
    result = saf_ray.wait_for_nodes(['192.0.2.2'], 10, poll=1.0, settle=5.0,
                                    nodes_fn=scripted([alive, alive, dead]),
                                    clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] is False
    assert result['missing'] == ['192.0.2.2'] and result['dropped'] == ['192.0.2.2']
    assert result['elapsed'] == 10.0


def test_wait_for_nodes_node_id_change_restarts_settle():
    clock = FakeClock()
    first = [make_node(BETA_OLD_ID, '192.0.2.2', 'beta')]
    second = [make_node(BETA_OLD_ID, '192.0.2.2', 'beta', alive=False), make_node(BETA_ID, '192.0.2.2', 'beta')]
    result = saf_ray.wait_for_nodes(['192.0.2.2'], 60, poll=1.0, settle=3.0,
                                    nodes_fn=scripted([first, first, second]),
                                    clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] is True
    assert result['dropped'] == ['192.0.2.2']
    assert result['elapsed'] == 5.0  # new node ID seen at t=2, settled at t=5


def test_wait_for_nodes_times_out_on_missing_node():
    clock = FakeClock()
    nodes = [make_node(ALPHA_ID, '192.0.2.1', 'alpha', head=True)]
    result = saf_ray.wait_for_nodes(['192.0.2.1', '192.0.2.2'], 3.5, poll=1.0, settle=1.0,
                                    nodes_fn=scripted([nodes]), clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] is False
    assert result['missing'] == ['192.0.2.2']
    assert result['elapsed'] == 3.5
    assert clock.sleeps == [1.0, 1.0, 1.0, 0.5]


def test_wait_for_nodes_waits_out_two_alive_entries_after_a_hard_restart():
    """Observed with Ray 2.49.2: SIGKILL a worker node and restart it at once; the old entry stays Alive ~11 s."""
    clock = FakeClock()
    old = make_node(BETA_OLD_ID, '192.0.2.2', 'beta')
    new = make_node(BETA_ID, '192.0.2.2', 'beta')
    old_dead = make_node(BETA_OLD_ID, '192.0.2.2', 'beta', alive=False)
    snapshots = [[old, new]] * 8 + [[new, old_dead]]
    result = saf_ray.wait_for_nodes(['192.0.2.2'], 60, poll=1.0, settle=2.0, nodes_fn=scripted(snapshots),
                                    clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] is True
    assert result['elapsed'] == 10.0  # stale entry gone at t=8, settled at t=10
    assert result['dropped'] == ['192.0.2.2']


def test_two_alive_entries_at_one_address_are_ambiguous():
    nodes = [make_node(BETA_OLD_ID, '192.0.2.2', 'beta'), make_node(BETA_ID, '192.0.2.2', 'beta')]
    with pytest.raises(AmbiguousTarget) as excinfo:
        saf_ray.select_target(nodes, address='192.0.2.2')
    assert 'health check' in str(excinfo.value)


class ListeningGcs(object):
    """A TCP listener standing in for the GCS port (so connect() gets past its TCP check)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        return '127.0.0.1:%d' % self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def test_connect_retries_connection_error_while_head_starts(monkeypatch):
    install_fake_ray(monkeypatch, ALPHA_ID)
    ray = sys.modules['ray']
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise ConnectionError
    monkeypatch.setattr(ray, 'init', init, raising=False)
    monkeypatch.setattr(saf_ray, 'CONNECT_RETRY_SECONDS', 0.01)
    with ListeningGcs() as address:
        cluster = saf_ray.connect(address, '127.0.0.1', timeout=5)
    assert cluster.connect_attempts == 3
    assert calls[0] == {'address': address, '_node_ip_address': '127.0.0.1', 'namespace': 'saf',
                        'log_to_driver': False, 'logging_level': 40, 'configure_logging': True}


def test_connect_gives_up_after_timeout(monkeypatch):
    install_fake_ray(monkeypatch, ALPHA_ID)

    def init(**kwargs):
        raise ConnectionError
    monkeypatch.setattr(sys.modules['ray'], 'init', init, raising=False)
    monkeypatch.setattr(saf_ray, 'CONNECT_RETRY_SECONDS', 0.05)
    with ListeningGcs() as address:
        with pytest.raises(ConnectError) as excinfo:
            saf_ray.connect(address, '127.0.0.1', timeout=0.3)
    assert 'registered with the GCS' in str(excinfo.value)


def test_connect_does_not_retry_other_errors(monkeypatch):
    install_fake_ray(monkeypatch, ALPHA_ID)
    calls = []

    def init(**kwargs):
        calls.append(1)
        raise RuntimeError('Version mismatch: The cluster was started with Ray 2.49.1')
    monkeypatch.setattr(sys.modules['ray'], 'init', init, raising=False)
    with ListeningGcs() as address:
        with pytest.raises(ConnectError) as excinfo:
            saf_ray.connect(address, '127.0.0.1', timeout=5)
    assert calls == [1]
    assert 'Version mismatch' in str(excinfo.value)


# ----------------------------------------------------------------- node IDs of another type (lab finding 2)

from fake_ray_cluster import FakeNodeID  # noqa: E402


@pytest.mark.parametrize('value', [BETA_ID, FakeNodeID(BETA_ID), bytes.fromhex(BETA_ID), bytearray.fromhex(BETA_ID)],
                         ids=['str', 'NodeID', 'bytes', 'bytearray'])
def test_node_id_hex_gives_the_hex_string_of_any_form(value):
    assert saf_ray.node_id_hex(value) == BETA_ID


@pytest.mark.parametrize('value', [None, 12345, 1.5, ['ab'], object()])
def test_node_id_hex_refuses_what_has_no_hex_naming_the_type(value):
    with pytest.raises(ValueError) as excinfo:
        saf_ray.node_id_hex(value)
    assert type(value).__name__ in str(excinfo.value) and 'must be a string' in str(excinfo.value)


def test_validate_node_id_takes_a_node_id_object_or_bytes_as_its_hex():
    """Today's code refused ray.NodeID: 'must be a string ... got NodeID(...)'."""
    assert saf_ray.validate_node_id(FakeNodeID(BETA_ID)) == BETA_ID
    assert saf_ray.validate_node_id(bytes.fromhex(BETA_ID)) == BETA_ID
    with pytest.raises(ValueError):
        saf_ray.validate_node_id(FakeNodeID('f' * 56))  # still the Nil ID


def test_normalise_nodes_and_node_summary_give_strings():
    nodes = [make_node(FakeNodeID(ALPHA_ID), '192.0.2.1', 'ALPHA.local', head=True),
             make_node(bytes.fromhex(BETA_ID), '192.0.2.2', 'BETA.local'),
             make_node(12345, '192.0.2.3', 'GAMMA.local')]
    normalised = saf_ray.normalise_nodes(nodes)
    assert [node['NodeID'] for node in normalised] == [ALPHA_ID, BETA_ID, '12345']
    assert isinstance(nodes[0]['NodeID'], FakeNodeID)  # the input is left alone
    assert saf_ray.node_summary(nodes[0])['node_id'] == ALPHA_ID
    assert saf_ray.select_target(normalised, address='192.0.2.2')['NodeID'] == BETA_ID


def test_json_safe_leaves_only_json_values():
    import json
    value = {'node': FakeNodeID(BETA_ID), 'raw': b'\x01\x02', 'ids': (1, 2.5, None, True),
             'set': {'x'}, 'nested': [{'o': object()}], 3: 'key'}
    safe = saf_ray.json_safe(value)
    assert safe['node'] == BETA_ID and safe['raw'] == '0102' and safe['ids'] == [1, 2.5, None, True]
    assert safe['set'] == ['x'] and safe['3'] == 'key' and safe['nested'][0]['o'].startswith('<object')
    json.dumps(safe)


def test_check_probe_report_takes_a_node_id_object_from_the_task():
    assert saf_ray.check_probe_report(good_report(node_id=FakeNodeID(BETA_ID)), BETA_ID, 'beta', True) == []


def test_the_task_reports_the_hex_of_a_node_id_object(monkeypatch):
    install_fake_ray(monkeypatch, FakeNodeID(BETA_ID))
    install_fake_mlx(monkeypatch)
    report = saf_ray.mlx_matmul_task(2, 1, 1, 0)
    assert report['node_id'] == BETA_ID


def test_ray_cluster_nodes_and_the_membership_wait_give_hex_strings(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID)
    state.nodes = [make_node(FakeNodeID(BETA_ID), '192.0.2.2', 'beta')]
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    assert cluster.nodes()[0]['NodeID'] == BETA_ID
    clock = FakeClock()
    result = saf_ray.wait_for_nodes(['192.0.2.2'], 5, settle=0, clock=clock.clock, sleep=clock.sleep)
    assert result['ok'] and result['nodes'][0]['NodeID'] == BETA_ID


def test_connect_reads_the_drivers_job_id(monkeypatch):
    install_fake_ray(monkeypatch, ALPHA_ID)
    monkeypatch.setattr(sys.modules['ray'], 'init', lambda **kwargs: None, raising=False)
    with ListeningGcs() as address:
        cluster = saf_ray.connect(address, '127.0.0.1', timeout=5)
    assert cluster.job_id == '0d000000'


# ----------------------------------------------------------------- growth of the matrix (issue 16 h)

def test_matmul_bytes_is_three_float32_matrices():
    assert saf_ray.matmul_bytes(1) == 12
    assert saf_ray.matmul_bytes(1024) == 3 * 4 * 1024 ** 2 == 12582912
    assert saf_ray.matmul_bytes(8192) == 805306368  # fits the 1 GiB default cap; 16384 (3 GiB) does not
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError):
            saf_ray.matmul_bytes(bad)


def test_next_matrix_size_doubles():
    assert [saf_ray.next_matrix_size(n) for n in (1, 1000, 1024)] == [2, 2000, 2048]
    with pytest.raises(ValueError):
        saf_ray.next_matrix_size(0)


GIB = 2 ** 30


@pytest.mark.parametrize('n, seconds, min_seconds, max_bytes, wanted', [
    (1024, 0.0004, 0.02, GIB, (True, None)),                 # an M3 Ultra at 1024: far below the floor
    (8192, 0.09, 0.02, GIB, (False, 'floor')),               # long enough
    (1024, 0.02, 0.02, GIB, (False, 'floor')),               # exactly the floor counts
    (8192, 0.001, 0.02, GIB, (False, 'cap')),                # 16384 needs 3 GiB
    (4096, 0.001, 0.02, 805306368, (True, None)),            # 8192 fits exactly (3 x 4 x 8192**2)
    (4096, 0.001, 0.02, 805306367, (False, 'cap')),
    (1024, 0.0004, 0, GIB, (False, 'fixed')),                # no floor: never grows
    (2 ** 22, 0.001, 0.02, None, (False, 'cap')),            # 2**23: gamma_n reaches 1
])
def test_should_grow(n, seconds, min_seconds, max_bytes, wanted):
    assert saf_ray.should_grow(n, seconds, min_seconds, max_bytes) == wanted


def device_model(dispatch=0.0003, flops_per_second=12e12):
    """Seconds of one product as a GPU behind a dispatch cost would take them (a model, for the tests)."""
    calls = []

    def time_product(n):
        calls.append(n)
        return dispatch + 2 * n ** 3 / flops_per_second
    return time_product, calls


def test_choose_matrix_size_grows_until_the_floor():
    time_product, calls = device_model()
    chosen = saf_ray.choose_matrix_size(1024, 0.02, GIB, time_product)
    assert chosen['matrix_size'] == 8192 and chosen['stopped_by'] == 'floor'
    assert calls == [1024, 2048, 4096, 8192]
    assert [t['matrix_size'] for t in chosen['trials']] == calls
    assert chosen['trials'][-1]['seconds'] >= 0.02 > chosen['trials'][-2]['seconds']


def test_choose_matrix_size_stops_at_the_memory_cap():
    time_product, calls = device_model(flops_per_second=1e15)
    chosen = saf_ray.choose_matrix_size(1024, 0.02, saf_ray.matmul_bytes(4096), time_product)
    assert chosen == {'matrix_size': 4096, 'stopped_by': 'cap', 'trials': chosen['trials']}
    assert calls == [1024, 2048, 4096]


def test_choose_matrix_size_without_a_floor_times_nothing():
    time_product, calls = device_model()
    assert saf_ray.choose_matrix_size(1024, 0, GIB, time_product) == {'matrix_size': 1024, 'stopped_by': 'fixed',
                                                                      'trials': []}
    assert calls == []


def test_the_task_grows_its_matrix_up_to_the_cap(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID)
    core = install_fake_mlx(monkeypatch)
    # A floor no product reaches: 2 -> 4 -> 8, then 16 would pass the cap.
    report = saf_ray.mlx_matmul_task(2, 3, 4, 7, min_seconds=1000.0, max_bytes=saf_ray.matmul_bytes(8))
    assert report['matrix_size'] == 8
    sizing = report['sizing']
    assert sizing['stopped_by'] == 'cap' and sizing['start'] == 2
    assert [t['matrix_size'] for t in sizing['trials']] == [2, 4, 8]
    assert sizing['matrix_bytes'] == 768 and sizing['max_bytes'] == 768 and sizing['min_seconds'] == 1000.0
    # per size: inputs, warm-up, one timed trial; then the three timed iterations at 8
    assert core.evaluated == [2, 1, 1] * 3 + [1, 1, 1]
    assert report['gamma_n'] == saf_ray.matmul_error_bound(8) and report['checked'] == 4
    assert report['product_ok'] is True
    assert report['gflops'] == saf_ray.gflops(8, report['median_seconds'])


def test_the_task_stops_at_the_floor(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID)
    install_fake_mlx(monkeypatch)
    report = saf_ray.mlx_matmul_task(4, 1, 2, 7, min_seconds=1e-12, max_bytes=saf_ray.matmul_bytes(64))
    assert report['matrix_size'] == 4 and report['sizing']['stopped_by'] == 'floor'
    assert len(report['sizing']['trials']) == 1


def test_the_task_keeps_its_size_without_a_floor(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID)
    core = install_fake_mlx(monkeypatch)
    report = saf_ray.mlx_matmul_task(4, 2, 2, 7)
    assert report['matrix_size'] == 4
    assert report['sizing'] == {'start': 4, 'min_seconds': 0.0, 'max_bytes': None, 'matrix_bytes': 192,
                                'stopped_by': 'fixed', 'trials': []}
    assert core.evaluated == [2, 1, 1, 1]


# ----------------------------------------------------------------- the GPU as a Ray resource (issue 16 i)

def test_run_pinned_many_asks_for_the_gpu_resource_with_one_cpu(monkeypatch):
    state = install_fake_ray(monkeypatch, BETA_ID)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],)), (GAMMA_ID, ([2.0],))], timeout=5,
                            num_cpus=1, resources={'metal_gpu': 1})
    assert [(o['num_cpus'], o['resources']) for o in state.options] == [(1, {'metal_gpu': 1})] * 2
    cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],))], timeout=5)
    assert 'resources' not in state.options[-1]  # none asked for, none passed


def test_format_resources():
    resources = make_node(BETA_ID, '192.0.2.2', 'BETA.local', cpu=28.0, head=True,
                          extra={'metal_gpu': 1.0})['Resources']
    assert saf_ray.format_resources(resources) == 'CPU 28, memory 7.5 GiB, metal_gpu 1, object_store_memory 1.9 GiB'
    assert saf_ray.format_resources({'object_store_memory': 268435456.0, 'CPU': 0.5}) == \
        'CPU 0.5, object_store_memory 256 MiB'
    assert saf_ray.format_resources({}) == 'none'


def test_check_node_resource():
    with_gpu = make_node(BETA_ID, '192.0.2.2', 'BETA.local', extra={'metal_gpu': 1.0})
    assert saf_ray.check_node_resource(with_gpu, 'metal_gpu') is None
    without = make_node(GAMMA_ID, '192.0.2.3', 'GAMMA.local', cpu=2.0)
    problem = saf_ray.check_node_resource(without, 'metal_gpu')
    assert problem.startswith("Ray node %s (192.0.2.3, GAMMA.local) offers no 'metal_gpu' resource, wanted 1" % GAMMA_ID)
    assert 'CPU 2' in problem and '--resources=\'{"metal_gpu": 1}\'' in problem
    half = make_node(GAMMA_ID, '192.0.2.3', 'GAMMA.local', extra={'metal_gpu': 0.5})
    assert "offers only 0.5 of 'metal_gpu'" in saf_ray.check_node_resource(half, 'metal_gpu')


# ----------------------------------------------------------------- a worker process that dies (lab finding 1)

def test_a_dead_worker_is_a_task_failure_that_says_so(monkeypatch):
    install_fake_ray(monkeypatch, BETA_ID, raise_on_get=lambda exceptions: exceptions.WorkerCrashedError())
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    (outcome,) = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],))])
    assert isinstance(outcome, TaskFailed)
    assert outcome.worker_died is True and outcome.error_type == 'WorkerCrashedError'
    assert str(outcome).startswith('its worker process died: WorkerCrashedError: The worker died unexpectedly')


@pytest.mark.parametrize('raised, name', [(lambda e: e.RayTaskError('boom'), 'RayTaskError'),
                                          (lambda e: TypeError('odd payload'), 'TypeError')])
def test_other_task_failures_are_named_but_no_dead_worker(monkeypatch, raised, name):
    install_fake_ray(monkeypatch, BETA_ID, raise_on_get=raised)
    cluster = saf_ray.RayCluster(sys.modules['ray'], '192.0.2.1:6379', '192.0.2.1', 0.01)
    (outcome,) = cluster.run_pinned_many(saf_ray.median, [(BETA_ID, ([1.0],))])
    assert isinstance(outcome, TaskFailed) and outcome.error_type == name and outcome.worker_died is False
    assert str(outcome).startswith('the Ray task failed: %s: ' % name)
