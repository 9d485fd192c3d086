# -*- coding: utf-8 -*-
"""Tests of library/saf_tailscale_check.py.

The pure functions run on status JSON recorded in the shape of ``tailscale status --json``
(``fixtures/tailscale/``: placeholder names ALPHA/BETA, Tailscale addresses in 100.64.0.0/10,
endpoints in documentation ranges, node keys ``nodekey:00..01``). The whole module runs against
``tests/doubles/bin/tailscale`` (a TEST DOUBLE of the CLI), copied into ``tmp_path`` with a scenario
file next to it; no Tailscale is needed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys

import pytest
import yaml

import saf_tailscale_check
from saf_tailscale_check import (
    CliNotFound,
    StatusError,
    check_peers,
    find_cli,
    first_ipv4,
    match_peer,
    node_names,
    parse_go_duration_ms,
    parse_ping_output,
    parse_status,
    ping_argv,
    ping_bound,
)

from ansible.module_utils import basic
from module_harness import patch_exit_fail, run_module  # noqa: F401  (patch_exit_fail is a fixture)

UNIT_DIR = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(UNIT_DIR, 'fixtures', 'tailscale')
FAKE_CLI = os.path.join(os.path.dirname(UNIT_DIR), 'doubles', 'bin', 'tailscale')

ALPHA = {'name': 'alpha', 'host': 'ALPHA', 'address': '100.64.0.11'}
BETA = {'name': 'beta', 'host': 'BETA', 'address': '100.64.0.12'}
GAMMA = {'name': 'gamma', 'host': 'GAMMA', 'address': None}
PEERS = [ALPHA, BETA]


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


def beta_of(status):
    return [node for node in status['Peer'].values() if node['HostName'] == 'BETA'][0]


# --- find_cli ---------------------------------------------------------------------------------------

def make_exe(path, mode=0o755):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\nexit 0\n')
    os.chmod(path, mode)
    return path


def test_find_cli_prefers_the_override(tmp_path):
    override = make_exe(str(tmp_path / 'custom' / 'tailscale'))
    on_path = make_exe(str(tmp_path / 'bin' / 'tailscale'))
    assert find_cli(override, str(tmp_path / 'bin'), on_path, []) == (override, 'override')


@pytest.mark.parametrize('make, fragment', [
    (None, 'does not exist'),
    (0o644, 'is not executable'),
])
def test_find_cli_refuses_a_bad_override_without_searching_further(tmp_path, make, fragment):
    override = str(tmp_path / 'tailscale')
    if make is not None:
        make_exe(override, make)
    make_exe(str(tmp_path / 'bin' / 'tailscale'))
    with pytest.raises(CliNotFound) as raised:
        find_cli(override, str(tmp_path / 'bin'), None, [])
    assert '%s (inventory override) %s' % (override, fragment) in str(raised.value)
    assert raised.value.searched == [override]


def test_find_cli_order_path_then_app_bundle_then_homebrew(tmp_path):
    app = make_exe(str(tmp_path / 'Tailscale.app' / 'Contents' / 'MacOS' / 'Tailscale'))
    brew = make_exe(str(tmp_path / 'brew' / 'bin' / 'tailscale'))
    on_path = make_exe(str(tmp_path / 'bin' / 'tailscale'))
    prefixes = [str(tmp_path / 'nobrew'), str(tmp_path / 'brew')]
    path_env = os.pathsep.join([str(tmp_path / 'empty'), str(tmp_path / 'bin')])
    assert find_cli(None, path_env, app, prefixes) == (on_path, 'path')
    assert find_cli('', str(tmp_path / 'empty'), app, prefixes) == (app, 'app_bundle')
    assert find_cli(None, '', str(tmp_path / 'no.app'), prefixes) == (brew, 'homebrew')


def test_find_cli_names_every_place_searched(tmp_path):
    app = str(tmp_path / 'Tailscale.app' / 'Contents' / 'MacOS' / 'Tailscale')
    with pytest.raises(CliNotFound) as raised:
        find_cli(None, '/nonexistent/bin', app, ['/nonexistent/opt/homebrew', '/nonexistent/usr/local'])
    assert raised.value.searched == [
        'PATH (/nonexistent/bin) for tailscale', app,
        '/nonexistent/opt/homebrew/bin/tailscale', '/nonexistent/usr/local/bin/tailscale']
    assert str(raised.value) == 'no Tailscale CLI found; searched ' + ', '.join(raised.value.searched)


# --- status ---------------------------------------------------------------------------------------

def test_parse_status_reads_the_recorded_shape():
    with open(os.path.join(FIXTURES, 'status_running.json')) as handle:
        status = parse_status(handle.read())
    assert status['BackendState'] == 'Running'
    assert status['Self']['HostName'] == 'ALPHA'
    assert [node['HostName'] for node in status['Peer'].values()] == ['BETA']


@pytest.mark.parametrize('text, fragment', [
    ('100.64.0.11     alpha   ops@   macOS   -', 'not valid JSON'),
    ('', 'not valid JSON'),
    ('[1, 2]', 'a JSON object with BackendState was wanted, got [1, 2]'),
    ('{"Self": {}}', 'a JSON object with BackendState was wanted'),
])
def test_parse_status_rejects_what_is_not_a_status(text, fragment):
    with pytest.raises(StatusError) as raised:
        parse_status(text)
    assert fragment in str(raised.value)


def test_first_ipv4_skips_ipv6_and_garbage():
    assert first_ipv4(['fd7a:115c:a1e0::c', 'x', '100.64.0.12']) == '100.64.0.12'
    assert first_ipv4(['fd7a:115c:a1e0::c']) is None
    assert first_ipv4(None) is None


def test_node_names_use_the_first_dns_label_and_the_hostname():
    assert node_names({'DNSName': 'beta-1.tail0000.ts.net.', 'HostName': 'BETA'}) == ('beta-1', 'beta')
    assert node_names({'DNSName': '', 'HostName': 'Beta'}) == ('', 'beta')


def test_match_peer_prefers_the_dns_name_of_a_readded_machine():
    status = fixture('status_beta_readded.json')
    old, candidates = match_peer(status, 'BETA')
    assert old['DNSName'] == 'beta.tail0000.ts.net.' and old['Online'] is False and len(candidates) == 1
    new, _ = match_peer(status, 'beta-1')
    assert new['TailscaleIPs'][0] == '100.64.0.13'


def test_match_peer_by_hostname_picks_the_only_online_one_or_none():
    status = fixture('status_beta_readded.json')
    for node in status['Peer'].values():
        node['DNSName'] = node['DNSName'].replace('beta.', 'beta-0.')  # no DNS label "beta" left
    chosen, candidates = match_peer(status, 'beta')
    assert len(candidates) == 2 and chosen['TailscaleIPs'][0] == '100.64.0.13'
    for node in status['Peer'].values():
        node['Online'] = False
    chosen, candidates = match_peer(status, 'beta')
    assert chosen is None and len(candidates) == 2


def test_check_peers_all_good():
    nodes, problems = check_peers(fixture('status_running.json'), PEERS, 'alpha')
    assert problems == []
    assert [(n['host'], n['self'], n['online'], n['tailscale_ipv4'], n['address'], n['address_source'])
            for n in nodes] == [('ALPHA', True, True, '100.64.0.11', '100.64.0.11', 'inventory'),
                                ('BETA', False, True, '100.64.0.12', '100.64.0.12', 'inventory')]
    assert nodes[1]['cur_addr'] == '192.0.2.12:41641' and nodes[1]['relay'] == 'fra'


def test_check_peers_names_an_offline_peer_and_when_it_was_last_seen():
    nodes, problems = check_peers(fixture('status_beta_offline.json'), PEERS, 'alpha')
    assert problems == ['peer beta (inventory host BETA) is offline (Online=false, LastSeen 2025-09-29T08:12:40Z)']
    assert nodes[1]['found'] is True and nodes[1]['online'] is False


def test_check_peers_names_an_absent_peer_and_the_peers_seen():
    nodes, problems = check_peers(fixture('status_running.json'), PEERS + [GAMMA], 'alpha')
    assert problems == ["peer gamma (inventory host GAMMA) is not in this tailnet's status (peers seen: beta)"]
    assert nodes[2]['found'] is False and nodes[2]['tailscale_ipv4'] is None


def test_check_peers_compares_the_inventory_address():
    wrong = dict(BETA, address='198.18.0.99')
    _, problems = check_peers(fixture('status_running.json'), [ALPHA, wrong], 'alpha')
    assert problems == ['peer beta (inventory host BETA): Tailscale IPv4 100.64.0.12, inventory says 198.18.0.99']


def test_check_peers_takes_the_address_from_tailscale_when_the_inventory_has_none():
    nodes, problems = check_peers(fixture('status_running.json'), [dict(ALPHA, address=None),
                                                                   dict(BETA, address=None)], 'alpha')
    assert problems == []
    assert [(n['address'], n['address_source']) for n in nodes] == [('100.64.0.11', 'tailscale'),
                                                                   ('100.64.0.12', 'tailscale')]


def test_check_peers_notices_the_wrong_machine():
    # The inventory runs the check on BETA's entry, but the status is ALPHA's.
    nodes, problems = check_peers(fixture('status_running.json'), PEERS, 'beta')
    assert len(problems) == 2
    assert problems[0].startswith("peer alpha (inventory host ALPHA) is not in this tailnet's status")
    assert problems[1] == ('this node is Tailscale machine alpha.tail0000.ts.net (HostName ALPHA, 100.64.0.11, '
                           'fd7a:115c:a1e0::b), but the inventory calls it beta (inventory host BETA); set its '
                           'Tailscale name in the inventory')


def test_check_peers_counts_a_self_without_online_as_online():
    status = fixture('status_running.json')
    del status['Self']['Online']
    nodes, problems = check_peers(status, PEERS, 'alpha')
    assert problems == [] and nodes[0]['online'] is True
    status['Self']['Online'] = False
    _, problems = check_peers(status, PEERS, 'alpha')
    assert problems == ['peer alpha (inventory host ALPHA) is offline (Online=false, LastSeen never)']


def test_check_peers_reports_a_node_without_ipv4():
    status = fixture('status_running.json')
    beta_of(status)['TailscaleIPs'] = ['fd7a:115c:a1e0::c']
    _, problems = check_peers(status, PEERS, 'alpha')
    assert problems == ["peer beta (inventory host BETA) has no Tailscale IPv4 (TailscaleIPs ['fd7a:115c:a1e0::c'])"]


# --- ping output ------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, ms', [
    ('3ms', 3.0), ('0s', 0.0), ('1.204s', 1204.0), ('1m2.5s', 62500.0), ('250\u00b5s', 0.25), ('2h', 7.2e6),
])
def test_parse_go_duration_ms(text, ms):
    assert parse_go_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize('text', ['', '3', 'ms', '3 ms', '3msx', '-3ms'])
def test_parse_go_duration_ms_rejects(text):
    with pytest.raises(ValueError):
        parse_go_duration_ms(text)


def test_ping_direct_after_a_relayed_pong():
    summary = parse_ping_output('pong from beta (100.64.0.12) via DERP(fra) in 25ms\n'
                                'pong from beta (100.64.0.12) via 192.0.2.12:41641 in 3ms\n')
    assert summary['path'] == 'direct'
    assert summary['latency_ms'] == 3.0  # the median over the direct replies only
    assert summary['latencies_ms'] == [25.0, 3.0]
    assert summary['pongs'] == 2 and summary['via'] == '192.0.2.12:41641'


def test_ping_relay_only():
    summary = parse_ping_output('pong from beta (100.64.0.12) via DERP(fra) in 31ms\n'
                                'pong from beta (100.64.0.12) via DERP(fra) in 24ms\n'
                                'pong from beta (100.64.0.12) via DERP(fra) in 25ms\n'
                                'direct connection not established\n')
    assert (summary['path'], summary['latency_ms'], summary['via']) == ('relay', 25.0, 'DERP(fra)')
    assert summary['direct_not_established'] is True


def test_ping_no_reply():
    summary = parse_ping_output('ping "100.64.0.12" timed out\nping "100.64.0.12" timed out\nno reply\n')
    assert summary['path'] == 'none' and summary['latency_ms'] is None and summary['via'] is None
    assert summary['timeouts'] == 2 and summary['pongs'] == 0
    assert summary['lines'][-1] == 'no reply'


def test_ping_with_peerapi_port_ipv6_endpoint_and_peer_relay():
    summary = parse_ping_output('pong from beta (100.64.0.12, 41152) via peer-relay(192.0.2.20:7777:vni:3) in 9ms\n'
                                'pong from beta (100.64.0.12, 41152) via [2001:db8::12]:41641 in 1.204s\n')
    assert summary['path'] == 'direct' and summary['via'] == '[2001:db8::12]:41641'
    assert summary['latency_ms'] == 1204.0
    relayed = parse_ping_output('pong from beta (100.64.0.12) via peer-relay(192.0.2.20:7777:vni:3) in 9ms\n')
    assert relayed['path'] == 'relay'


def test_ping_ignores_other_lines():
    summary = parse_ping_output('Warning: client version "1.86.2" != tailscaled server version "1.84.0"\n'
                                'pong from beta (100.64.0.12) via 192.0.2.12:41641 in soon\n')
    assert summary['path'] == 'none' and len(summary['lines']) == 2


def test_ping_argv_and_bound():
    assert ping_argv('/usr/bin/tailscale', '100.64.0.12', 5, 5.0) == [
        '/usr/bin/tailscale', 'ping', '-c', '5', '--timeout', '5s', '100.64.0.12']
    assert ping_argv('t', '100.64.0.12', 3, 2.5)[3:6] == ['3', '--timeout', '2500ms']
    assert ping_bound(5, 5.0) == 5 * 6.0 + saf_tailscale_check.PING_SLACK_SECONDS


# --- the module against the fake CLI ------------------------------------------------------------------

class FakeTailscale(object):
    """The fake CLI copied to ``<dir>/<name>`` with its scenario file next to it."""

    def __init__(self, directory, name='tailscale'):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.path = os.path.join(directory, name)
        shutil.copy(FAKE_CLI, self.path)
        os.chmod(self.path, 0o755)
        self.scenario(fixture('status_running.json'))

    def scenario(self, status, **extra):
        with open(os.path.join(self.dir, 'fake-tailscale.json'), 'w') as handle:
            json.dump(dict(extra, status=status), handle)

    def calls(self):
        try:
            with open(os.path.join(self.dir, 'fake-tailscale-calls.jsonl')) as handle:
                return [json.loads(line) for line in handle]
        except FileNotFoundError:
            return []

    def pings(self):
        return [call for call in self.calls() if call[:1] == ['ping']]


@pytest.fixture
def python_only_path(tmp_path, monkeypatch):
    """PATH holding only ``python3`` (for the fake's ``#!/usr/bin/env python3``), no ``tailscale``."""
    pybin = tmp_path / 'pybin'
    pybin.mkdir()
    os.symlink(sys.executable, str(pybin / 'python3'))
    monkeypatch.setenv('PATH', str(pybin))
    monkeypatch.delenv('SAF_FAKE_STATE_DIR', raising=False)
    return str(pybin)


@pytest.fixture
def warnings(monkeypatch):
    """Capture module.warn() messages."""
    seen = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, warning, **kwargs: seen.append(warning))
    return seen


@pytest.fixture
def fake(tmp_path, python_only_path, patch_exit_fail, warnings):
    return FakeTailscale(str(tmp_path / 'fakebin'))


def run(fake, **args):
    """Run the module on ALPHA with the fake as the ``cli`` override (unless ``args`` say otherwise)."""
    base = dict(cli=fake.path, self_name='alpha', peers=copy.deepcopy(PEERS))
    base.update(args)
    return run_module(saf_tailscale_check.main, base)


def test_all_good_direct(fake, warnings):
    fake.scenario(fixture('status_running.json'), ping={'beta': {'path': 'direct', 'relay_pongs': 1}})
    failed, result = run(fake)
    assert failed is False, result.get('msg')
    assert result['changed'] is False
    assert (result['cli'], result['cli_source']) == (fake.path, 'override')
    assert result['backend_state'] == 'Running' and result['version'] == '1.86.2-t0000000ab-g0000000cd'
    assert result['self_node'] == {'name': 'alpha', 'host': 'ALPHA', 'tailscale_ipv4': '100.64.0.11',
                                   'dns_name': 'alpha.tail0000.ts.net.'}
    assert [(p['host'], p['online'], p['address']) for p in result['peers']] == [
        ('ALPHA', True, '100.64.0.11'), ('BETA', True, '100.64.0.12')]
    [beta] = result['ping']
    assert (beta['host'], beta['path'], beta['latency_ms'], beta['pongs'], beta['via'], beta['rc']) == (
        'BETA', 'direct', 3.0, 2, '192.0.2.12:41641', 0)
    assert fake.pings() == [['ping', '-c', '5', '--timeout', '5s', '100.64.0.12']]
    assert result['problems'] == [] and warnings == []


def test_result_keys_are_documented(fake):
    failed, result = run(fake)
    assert failed is False
    documented = yaml.safe_load(saf_tailscale_check.RETURN)
    assert set(result) - {'changed', 'invocation'} <= set(documented)
    for key in ('peers', 'ping', 'self_node'):
        entries = result[key] if isinstance(result[key], list) else [result[key]]
        for entry in entries:
            assert set(entry) <= set(documented[key]['contains']), key


def test_peer_offline_fails_naming_it(fake):
    fake.scenario(fixture('status_beta_offline.json'))
    failed, result = run(fake)
    assert failed is True
    assert result['msg'] == ('ALPHA: the tailnet is not ready for the Ray cluster (1 problem): 1) peer beta '
                             '(inventory host BETA) is offline (Online=false, LastSeen 2025-09-29T08:12:40Z)')
    assert result['ping'][0]['pinged'] is False and fake.pings() == []


def test_peer_absent_fails_and_the_others_are_still_pinged(fake):
    failed, result = run(fake, peers=PEERS + [GAMMA])
    assert failed is True
    assert "1) peer gamma (inventory host GAMMA) is not in this tailnet's status (peers seen: beta)" in result['msg']
    assert [(p['host'], p['pinged'], p['path']) for p in result['ping']] == [('BETA', True, 'direct'),
                                                                           ('GAMMA', False, 'none')]


def test_relay_only_warns_and_passes(fake, warnings):
    fake.scenario(fixture('status_running.json'), ping={'100.64.0.12': {'path': 'relay', 'latency_ms': 41}})
    failed, result = run(fake, ping_count=3)
    assert failed is False, result.get('msg')
    [beta] = result['ping']
    assert (beta['path'], beta['latency_ms'], beta['pongs'], beta['via'], beta['rc']) == (
        'relay', 41.0, 3, 'DERP(fra)', 1)
    assert beta['output'][-1] == 'direct connection not established'
    assert len(warnings) == 1
    assert warnings[0].startswith('ALPHA: peer beta (inventory host BETA) at 100.64.0.12 answers only through a '
                                  'relay (DERP(fra), median 41 ms over 3 replies)')


def test_no_reply_fails_naming_the_peer(fake):
    fake.scenario(fixture('status_running.json'), ping={'beta': {'path': 'none'}})
    failed, result = run(fake, ping_count=2, ping_timeout=1)
    assert failed is True
    assert result['msg'] == (
        'ALPHA: the tailnet is not ready for the Ray cluster (1 problem): 1) peer beta (inventory host BETA) at '
        '100.64.0.12 did not answer tailscale ping (2 of 2 pings timed out after 1 s each): ping "100.64.0.12" '
        'timed out | ping "100.64.0.12" timed out | no reply')
    assert result['ping'][0]['path'] == 'none' and result['ping'][0]['timeouts'] == 2
    assert fake.pings() == [['ping', '-c', '2', '--timeout', '1s', '100.64.0.12']]


def test_cli_only_in_the_app_bundle(tmp_path, fake):
    app = FakeTailscale(str(tmp_path / 'Tailscale.app' / 'Contents' / 'MacOS'), name='Tailscale')
    failed, result = run(fake, cli=None, app_cli=app.path, homebrew_prefixes=[str(tmp_path / 'nobrew')])
    assert failed is False, result.get('msg')
    assert (result['cli'], result['cli_source']) == (app.path, 'app_bundle')
    assert [call[0] for call in app.calls()] == ['status', 'ping']
    assert fake.calls() == []


def test_cli_on_path_and_in_homebrew(tmp_path, fake, python_only_path, monkeypatch):
    brew = FakeTailscale(str(tmp_path / 'brew' / 'bin'))
    failed, result = run(fake, cli='', app_cli=str(tmp_path / 'none.app'), homebrew_prefixes=[str(tmp_path / 'brew')])
    assert (failed, result['cli'], result['cli_source']) == (False, brew.path, 'homebrew')
    monkeypatch.setenv('PATH', os.pathsep.join([fake.dir, python_only_path]))
    failed, result = run(fake, cli=None, homebrew_prefixes=[str(tmp_path / 'brew')])
    assert (failed, result['cli'], result['cli_source']) == (False, fake.path, 'path')


def test_cli_missing_lists_the_places_searched(tmp_path, fake, python_only_path):
    app = str(tmp_path / 'Tailscale.app' / 'Contents' / 'MacOS' / 'Tailscale')
    prefixes = [str(tmp_path / 'opt' / 'homebrew'), str(tmp_path / 'usr' / 'local')]
    failed, result = run(fake, cli=None, app_cli=app, homebrew_prefixes=prefixes)
    assert failed is True
    searched = ['PATH (%s) for tailscale' % python_only_path, app,
                os.path.join(prefixes[0], 'bin', 'tailscale'), os.path.join(prefixes[1], 'bin', 'tailscale')]
    assert result['searched'] == searched
    assert result['msg'] == ('ALPHA: no Tailscale CLI found; searched %s; install Tailscale or set the cli option '
                             '(saf_tailscale_cli)' % ', '.join(searched))


def test_cli_override_that_is_not_executable(tmp_path, fake):
    os.chmod(fake.path, 0o644)
    failed, result = run(fake)
    assert failed is True
    assert result['msg'] == 'ALPHA: cli %s (inventory override) is not executable, wanted an executable file' % (
        fake.path)


def test_address_mismatch(fake):
    failed, result = run(fake, peers=[ALPHA, dict(BETA, address='198.18.0.99')])
    assert failed is True
    assert result['problems'] == [
        'peer beta (inventory host BETA): Tailscale IPv4 100.64.0.12, inventory says 198.18.0.99']
    assert result['ping'][0]['path'] == 'direct'  # the Tailscale address is still pinged


def test_address_taken_from_tailscale_when_the_inventory_has_none(fake):
    failed, result = run(fake, peers=[dict(ALPHA, address=None), dict(BETA, address=None)])
    assert failed is False, result.get('msg')
    assert [(p['host'], p['address'], p['address_source']) for p in result['peers']] == [
        ('ALPHA', '100.64.0.11', 'tailscale'), ('BETA', '100.64.0.12', 'tailscale')]
    assert result['self_node']['tailscale_ipv4'] == '100.64.0.11'


def test_backend_needs_login(fake):
    fake.scenario(fixture('status_needs_login.json'))
    failed, result = run(fake)
    assert failed is True
    assert result['msg'] == ('ALPHA: Tailscale is not running on this node: BackendState is NeedsLogin, wanted '
                             'Running (log this node in: tailscale up (or sign in from the Tailscale app))')
    assert result['backend_state'] == 'NeedsLogin'
    assert fake.pings() == []


def test_every_problem_is_listed_at_once(fake):
    fake.scenario(fixture('status_beta_offline.json'))
    failed, result = run(fake, peers=[dict(ALPHA, address='198.18.0.11'), BETA, GAMMA])
    assert failed is True
    assert result['msg'].startswith('ALPHA: the tailnet is not ready for the Ray cluster (3 problems): 1) peer alpha '
                                    '(inventory host ALPHA): Tailscale IPv4 100.64.0.11, inventory says 198.18.0.11; '
                                    '2) peer beta (inventory host BETA) is offline')
    assert '3) peer gamma (inventory host GAMMA) is not in' in result['msg']


def test_tailscaled_down(fake):
    fake.scenario(fixture('status_running.json'), daemon='down')
    failed, result = run(fake)
    assert failed is True
    assert result['msg'] == ("ALPHA: %s status --json exited 1: failed to connect to local tailscaled; it doesn't "
                             "appear to be running (sudo systemctl start tailscaled ?)" % fake.path)


def test_a_hanging_ping_is_killed_at_the_bound(fake, monkeypatch):
    monkeypatch.setattr(saf_tailscale_check, 'PING_SLACK_SECONDS', 0.3)
    fake.scenario(fixture('status_running.json'), hang_seconds=5)
    failed, result = run(fake, ping_count=1, ping_timeout=0.2)
    assert failed is True
    assert 'did not answer tailscale ping (tailscale ping did not finish within 1.5 s)' in result['msg']
    assert result['ping'][0]['rc'] is None


def test_check_mode_runs_status_and_ping(fake):
    failed, result = run(fake, _ansible_check_mode=True)
    assert failed is False and result['changed'] is False
    assert [call[0] for call in fake.calls()] == ['status', 'ping']


@pytest.mark.parametrize('args, message', [
    ({'ping_count': 0}, 'ALPHA: ping_count must be >= 1 (0 means no limit to tailscale ping), got 0'),
    ({'ping_timeout': 0}, 'ALPHA: ping_timeout must be > 0 seconds, got 0.0'),
    ({'self_name': 'gamma'}, 'self_name gamma is not the name of any peers entry (alpha, beta)'),
    ({'peers': [ALPHA, dict(BETA, name='ALPHA')]},
     'peers lists Tailscale name ALPHA twice (inventory hosts ALPHA and BETA); wanted one entry per machine'),
    ({'peers': [ALPHA, dict(BETA, address='beta.local')]},
     "BETA: peers entry beta has address 'beta.local', wanted an IPv4 address (or null to take the Tailscale IPv4)"),
])
def test_bad_option_values(fake, args, message):
    failed, result = run(fake, **args)
    assert failed is True
    assert result['msg'] == message
    assert fake.calls() == []


def test_host_defaults_to_the_name(fake):
    failed, result = run(fake, peers=[{'name': 'alpha'}, {'name': 'beta'}])
    assert failed is False, result.get('msg')
    assert [p['host'] for p in result['peers']] == ['alpha', 'beta']
