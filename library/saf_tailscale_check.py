#!/usr/bin/python
# -*- coding: utf-8 -*-
# SAF: Ansible provisioning of a Ray 2.49.2 + MLX 0.29.1 cluster.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: saf_tailscale_check
short_description: Check that this node and every other cluster node are up in the tailnet, and how they reach each other
description:
  - Runs on one cluster node. Finds the Tailscale CLI, reads C(tailscale status --json) (never the text table)
    and checks that Tailscale is C(Running) here, that this node is the Tailscale machine the inventory says
    (O(self_name)), and that every other node of O(peers) is in the tailnet's status and online.
  - Each node's Tailscale IPv4 (the first IPv4 in C(TailscaleIPs)) must equal the O(peers[].address) the
    inventory gives Ray; when the inventory leaves the address null, the module reports the Tailscale IPv4
    (RV(peers[].address)) so the playbook can use it.
  - Then it runs C(tailscale ping -c N --timeout Ds <IPv4>) to every other node and reads its output, not its
    exit code (the CLI exits 1 when every reply came through a DERP relay). A node that answers only through a
    relay passes with a warning; a node that does not answer fails.
  - Every problem found is collected, and the module fails once, listing all of them, each naming the node,
    the value seen and the value wanted.
  - A pong proves the tunnel only, not Ray's ports (RV(ping_scope)); an error the module did not foresee fails it
    naming the node, with the exception's text and traceback, instead of leaving no result.
  - The module only reads (status and ping change nothing); RV(ignore:changed) is always false and it runs in
    check mode too.
version_added: "1.1.0"
author:
  - SAF maintainers
requirements:
  - Tailscale on the node (any 1.x with C(status --json) and C(ping --timeout)), logged in to the tailnet
  - Python 3.9 or later on the node (standard library only)
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode runs it unchanged, pings included.
  diff_mode:
    support: none
options:
  cli:
    description:
      - Path of the Tailscale CLI to use (an inventory override). When given it must be an executable file;
        nothing else is searched.
      - When omitted (or empty), the first executable of these is used, in this order (see RV(cli_source)),
        C(tailscale) on the node's C(PATH), then O(app_cli), then C(<prefix>/bin/tailscale) for each of
        O(homebrew_prefixes).
    type: str
  app_cli:
    description:
      - The CLI inside the macOS Tailscale app bundle (Mac App Store and standalone app).
      - The app's one binary is GUI, network extension and CLI (CLI mode when run from a terminal or a
        script). The module calls it by this full path and never links it elsewhere (Tailscale's macOS CLI
        instructions use an alias of the full path, not a symlink).
    type: str
    default: /Applications/Tailscale.app/Contents/MacOS/Tailscale
  homebrew_prefixes:
    description:
      - Homebrew prefixes whose C(bin/tailscale) is tried last (formula C(tailscale)). V(/opt/homebrew) is the
        prefix on Apple silicon, V(/usr/local) on Intel Macs.
    type: list
    elements: str
    default: [/opt/homebrew, /usr/local]
  peers:
    description:
      - Every node of the cluster, this one included.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Tailscale machine name of the node. Compared case-insensitively with the C(HostName) and with the
            first label of the C(DNSName) in the status (a C(DNSName) match wins, since a machine that was
            re-added keeps its C(HostName) but gets a new C(DNSName) such as C(beta-1)).
          - Names must be unique.
        type: str
        required: true
      host:
        description:
          - Inventory hostname of the node, used in messages and returned. Defaults to O(peers[].name).
        type: str
      address:
        description:
          - IPv4 address the inventory gives Ray for this node. It must equal the node's Tailscale IPv4.
          - Null when the inventory leaves it to Tailscale; RV(peers[].address) then reports the Tailscale IPv4.
        type: str
  self_name:
    description:
      - O(peers[].name) of the node the module runs on. Its entry is checked against the status's C(Self).
    type: str
    required: true
  ping_count:
    description:
      - Maximum number of pings per node (C(tailscale ping -c)). The CLI stops at the first direct reply. At least 1
        (V(0) means "no limit" to the CLI).
    type: int
    default: 5
  ping_timeout:
    description:
      - Seconds to wait for each reply (C(tailscale ping --timeout)). Must be > 0.
      - The whole ping of one node is bounded by O(ping_count) x (O(ping_timeout) + 1) + 10 seconds (the CLI
        waits 1 s after each relayed reply); past that it is killed and counts as no reply.
    type: float
    default: 5
notes:
  - Ping output formats, exit codes and the status JSON fields are those of C(cmd/tailscale/cli/ping.go),
    C(cmd/tailscale/cli/status.go) and C(ipn/ipnstate/ipnstate.go) in github.com/tailscale/tailscale.
    A reply reads C(pong from beta (100.64.0.12) via 192.0.2.10:41641 in 3ms) (direct),
    C(... via DERP(fra) in 25ms) (DERP relay) or C(... via peer-relay(...) in 9ms) (Tailscale peer relay,
    counted as relay); a lost one C(ping "100.64.0.12" timed out).
  - C(tailscale status --json) gets 30 seconds; a tailscaled that does not answer in that time fails the module.
  - A C(BackendState) other than C(Running) fails with what to do, e.g. C(NeedsLogin) (log in), C(Stopped)
    (C(tailscale up)), C(NeedsMachineAuth) (approve the machine in the admin console).
  - Over SSH a Mac's C(PATH) is C(/usr/bin:/bin:/usr/sbin:/sbin), so the CLI is usually found by the fallbacks
    (O(app_cli), then O(homebrew_prefixes)).
  - O(ping_timeout) is passed as a Go duration, C(5s), or C(2500ms) for V(2.5). Flags come before the address
    (Go's flag parsing stops at the first argument).
  - C(tailscale ping) is answered by tailscaled itself over Tailscale's own path, so it passes while Tailscale
    ACLs (grants) or the node's own firewall block TCP to a service port (issues 17490 and 4882 of
    github.com/tailscale/tailscale).
    It proves the tunnel between the nodes, not that Ray's ports are reachable through it.
seealso:
  - name: tailscale ping
    description: How Tailscale reports the path each reply took.
    link: https://tailscale.com/kb/1080/cli#ping
"""

EXAMPLES = r"""
# On every node of saf_cluster, as roles/tailscale_network runs it: under the node's own Python (3.9 or
# later, standard library only; before any venv exists). The saf_tailscale_* settings are the saf
# role's defaults; saf_tailscale_name and saf_node_ip are per-host inventory variables.
- name: Check this node's Tailscale status and its paths to the other nodes
  saf_tailscale_check:
    cli: "{{ saf_tailscale_cli if saf_tailscale_cli | length > 0 else omit }}"
    app_cli: "{{ saf_tailscale_app_cli }}"
    homebrew_prefixes: "{{ saf_tailscale_homebrew_prefixes }}"
    peers: >-
      {% set ns = namespace(peers=[]) %}{% for h in groups['saf_cluster'] %}{% set ns.peers = ns.peers + [{
        'name': hostvars[h].saf_tailscale_name | default(h),
        'host': h,
        'address': hostvars[h].saf_node_ip | default(none)}] %}{% endfor %}{{ ns.peers }}
    self_name: "{{ saf_tailscale_name | default(inventory_hostname) }}"
    ping_count: "{{ saf_tailscale_ping_count }}"
    ping_timeout: "{{ saf_tailscale_ping_timeout }}"
  register: tailnet

- name: Show how this node reaches the others
  ansible.builtin.debug:
    msg: "{{ item.host }}: {{ item.path }}, {{ item.latency_ms }} ms via {{ item.via }}"
  loop: "{{ tailnet.ping }}"

- name: On BETA, the app bundle's CLI only, fewer and shorter pings, addresses left to Tailscale
  saf_tailscale_check:
    cli: "{{ saf_tailscale_app_cli }}"
    self_name: BETA
    peers:
      - {name: ALPHA, address: null}
      - {name: BETA, address: null}
    ping_count: 2
    ping_timeout: 2
  when: inventory_hostname == 'BETA'
"""

RETURN = r"""
cli:
  description: Path of the Tailscale CLI used.
  returned: when a CLI was found
  type: str
  sample: /Applications/Tailscale.app/Contents/MacOS/Tailscale
cli_source:
  description: Where the CLI was found.
  returned: when a CLI was found
  type: str
  choices: [override, path, app_bundle, homebrew]
  sample: app_bundle
searched:
  description: Every place looked at for the CLI, in order, when no usable CLI was found; empty otherwise.
  returned: always
  type: list
  elements: str
  sample: [PATH (/usr/bin:/bin) for tailscale, /Applications/Tailscale.app/Contents/MacOS/Tailscale]
backend_state:
  description: C(BackendState) of the status (V(Running) on success; e.g. V(NeedsLogin), V(Stopped)).
  returned: when the status was read
  type: str
  sample: Running
version:
  description: C(Version) of tailscaled, from the status.
  returned: when the status was read
  type: str
  sample: 1.86.2-t0000000-g0000000
self_node:
  description:
    - This node as Tailscale sees it. (Not C(self), which C(exit_json) cannot take as a keyword.)
  returned: when the status was read
  type: dict
  contains:
    name:
      description: O(self_name).
      type: str
      sample: alpha
    host:
      description: Inventory hostname of this node.
      type: str
      sample: ALPHA
    tailscale_ipv4:
      description: First IPv4 of C(Self.TailscaleIPs), or null.
      type: str
      sample: 100.64.0.11
    dns_name:
      description: C(Self.DNSName).
      type: str
      sample: alpha.tail0000.ts.net.
peers:
  description: One entry per O(peers) entry, in the same order, this node included.
  returned: when the status was read
  type: list
  elements: dict
  contains:
    host:
      description: Inventory hostname.
      type: str
      sample: BETA
    name:
      description: Tailscale machine name (O(peers[].name)).
      type: str
      sample: beta
    self:
      description: Whether this is the node the module ran on.
      type: bool
    found:
      description: Whether the node is in the status (C(Self) for this node, C(Peer) for the others).
      type: bool
    online:
      description: C(Online) of the node (a missing C(Online) on C(Self) counts as true); null when not found.
      type: bool
    tailscale_ipv4:
      description: First IPv4 in the node's C(TailscaleIPs); null when not found or none.
      type: str
      sample: 100.64.0.12
    tailscale_ips:
      description: The node's C(TailscaleIPs).
      type: list
      elements: str
      sample: [100.64.0.12, "fd7a:115c:a1e0::2"]
    address:
      description: The address Ray should use; O(peers[].address), or the Tailscale IPv4 when that was null.
      type: str
      sample: 100.64.0.12
    address_source:
      description: V(inventory) or V(tailscale) (null when the inventory left it null and Tailscale has none).
      type: str
      sample: tailscale
    hostname:
      description: C(HostName) in the status.
      type: str
      sample: BETA
    dns_name:
      description: C(DNSName) in the status.
      type: str
      sample: beta.tail0000.ts.net.
    os:
      description: C(OS) in the status.
      type: str
      sample: macOS
    cur_addr:
      description: C(CurAddr), the direct endpoint in use (empty when none).
      type: str
      sample: 192.0.2.12:41641
    relay:
      description: C(Relay), the node's home DERP region code.
      type: str
      sample: fra
    last_seen:
      description: C(LastSeen) (the zero time C(0001-01-01T00:00:00Z) while online).
      type: str
ping:
  description: One entry per other node of O(peers), in order.
  returned: when the status was read
  type: list
  elements: dict
  contains:
    host:
      description: Inventory hostname.
      type: str
      sample: BETA
    name:
      description: Tailscale machine name.
      type: str
      sample: beta
    address:
      description: Tailscale IPv4 pinged (null when not pinged).
      type: str
      sample: 100.64.0.12
    pinged:
      description: False when the node was not pinged (not found, offline, or without an IPv4).
      type: bool
    path:
      description: V(direct) when a reply came over a direct UDP path, V(relay) when replies came only through a
        DERP or peer relay, V(none) without reply.
      type: str
      choices: [direct, relay, none]
      sample: direct
    latency_ms:
      description: Median round trip, in milliseconds, of the replies over RV(ping[].path); null without reply.
      type: float
      sample: 3.0
    latencies_ms:
      description: Round trip of every reply, in milliseconds, in order (the CLI rounds to whole milliseconds).
      type: list
      elements: float
      sample: [25.0, 3.0]
    pongs:
      description: Number of replies (any path).
      type: int
      sample: 2
    timeouts:
      description: Number of pings that timed out.
      type: int
      sample: 0
    via:
      description: C(via) of the last reply over RV(ping[].path) (an C(ip:port) endpoint, C(DERP(code)), ...).
      type: str
      sample: 192.0.2.12:41641
    rc:
      description: Exit code of C(tailscale ping) (1 after relayed replies only; null when killed or not run).
      type: int
      sample: 0
    output:
      description: The ping's stdout and stderr lines.
      type: list
      elements: str
problems:
  description: Every problem found, one sentence each (empty on success).
  returned: always
  type: list
  elements: str
  sample: ["peer beta (inventory host BETA) is offline (Online=false, LastSeen 2025-09-29T08:12:40Z)"]
ping_scope:
  description:
    - What RV(ping) proves and what it does not, one sentence for the play's output (the tunnel only, not Ray's
      TCP ports; where those are checked).
  returned: when Tailscale is running here (the nodes were checked)
  type: str
exception:
  description: Traceback of an error the module did not foresee (it then fails, naming the node).
  returned: on an unforeseen error
  type: str
"""

import ipaddress
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import traceback

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    cli=dict(type='str'),
    app_cli=dict(type='str', default='/Applications/Tailscale.app/Contents/MacOS/Tailscale'),
    homebrew_prefixes=dict(type='list', elements='str', default=['/opt/homebrew', '/usr/local']),
    peers=dict(
        type='list',
        elements='dict',
        required=True,
        options=dict(
            name=dict(type='str', required=True),
            host=dict(type='str'),
            address=dict(type='str'),
        ),
    ),
    self_name=dict(type='str', required=True),
    ping_count=dict(type='int', default=5),
    ping_timeout=dict(type='float', default=5),
)

#: Seconds ``tailscale status --json`` may take.
STATUS_TIMEOUT_SECONDS = 30.0
#: Seconds added to ``ping_count * (ping_timeout + 1)`` to bound one ``tailscale ping`` (CLI start-up, status read).
PING_SLACK_SECONDS = 10.0

# Formats printed by cmd/tailscale/cli/ping.go (tailscale/tailscale):
#   printf("pong from %s (%s%s) via %v in %v\n", pr.NodeName, pr.NodeIP, extra, via, latency)
# extra is ", <peerapi port>" when the peer reported one; via is pr.Endpoint (ip:port), "DERP(<region code>)"
# or "peer-relay(<addr>)"; latency is a Go time.Duration rounded to the millisecond ("3ms", "1.204s", "0s").
#   printf("ping %q timed out\n", ip)
# After -c pings with replies only through relays it returns errors.New("direct connection not established"),
# printed to stderr by cmd/tailscale/tailscale.go with exit code 1; without any reply "no reply".
PONG_RE = re.compile(
    r'^pong from (?P<node>.+?) \((?P<ip>[0-9A-Fa-f.:]+)(?:, (?P<peerapi>\d+))?\) via (?P<via>\S+) in (?P<latency>\S+)$')
TIMEOUT_RE = re.compile(r'^ping "(?P<ip>[^"]+)" timed out$')
#: One component of a Go ``time.Duration.String()``; longest unit names first so ``ms`` is not read as ``m``.
GO_DURATION_PART_RE = re.compile(r'(\d+(?:\.\d*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)')
GO_DURATION_MS = {'ns': 1e-6, 'us': 1e-3, '\u00b5s': 1e-3, '\u03bcs': 1e-3, 'ms': 1.0, 's': 1e3, 'm': 6e4, 'h': 3.6e6}
#: Go's zero time.Time as encoding/json writes it (PeerStatus.LastSeen of an online node).
GO_ZERO_TIME = '0001-01-01T00:00:00Z'

#: What a pong proves (RV ping_scope): tailscaled answers ``tailscale ping`` itself (disco over UDP,
#: or TSMP), before Tailscale's packet filter and the node's firewall see any TCP, so it passes while
#: ACLs or a firewall block Ray's ports (tailscale/tailscale#17490, #4882).
PING_SCOPE = ("tailscale ping proves the tunnel between the nodes only, not Ray's ports: tailscaled answers it "
              "itself, so it passes even when Tailscale ACLs (grants) or a node's firewall block TCP to them "
              "(tailscale/tailscale#17490, #4882). verify.yml's MLX probe fails when a worker cannot be "
              "reached on them, and ray_port_exposure checks they stay closed to hosts outside the cluster; "
              "no check here yet tries every Ray port between every pair of nodes.")

#: What to do about each non-running BackendState (ipn.State names, ipn/ipnstate/ipnstate.go).
STATE_HINTS = {
    'NeedsLogin': 'log this node in: tailscale up (or sign in from the Tailscale app)',
    'Stopped': 'connect it: tailscale up (or switch Tailscale on in the app)',
    'NeedsMachineAuth': 'approve this machine in the tailnet admin console',
    'Starting': 'tailscaled is still starting; run again in a few seconds',
    'NoState': 'tailscaled has not loaded its state yet; run again in a few seconds',
}


class CliNotFound(Exception):
    """No usable Tailscale CLI. ``args[0]`` is the reason, ``searched`` every place looked at."""

    def __init__(self, message, searched):
        super(CliNotFound, self).__init__(message)
        self.searched = searched


class StatusError(Exception):
    """``tailscale status --json`` gave no usable status; the message says what it gave."""


def _is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_cli(cli=None, path_env=None, app_cli=None, homebrew_prefixes=(), is_executable=_is_executable):
    """Return ``(path, source)`` of the Tailscale CLI to use; ``source`` is override|path|app_bundle|homebrew.

    Order: ``cli`` (an explicit override: used or refused, nothing else searched); ``tailscale`` on
    ``path_env`` (a ``PATH`` string, ``None`` for the process's own ``PATH``); ``app_cli`` (the macOS app
    bundle binary, used by its full path); ``<prefix>/bin/tailscale`` for each Homebrew prefix.
    Raises :class:`CliNotFound` naming every place searched.
    """
    if cli:
        if not os.path.exists(cli):
            raise CliNotFound('cli %s (inventory override) does not exist' % cli, [cli])
        if not is_executable(cli):
            kind = 'a directory' if os.path.isdir(cli) else 'not executable'
            raise CliNotFound('cli %s (inventory override) is %s, wanted an executable file' % (cli, kind), [cli])
        return cli, 'override'
    path_text = os.environ.get('PATH', os.defpath) if path_env is None else path_env
    searched = ['PATH (%s) for tailscale' % (path_text or 'empty')]
    found = shutil.which('tailscale', path=path_text) if path_text else None
    if found:
        return found, 'path'
    if app_cli:
        searched.append(app_cli)
        if is_executable(app_cli):
            return app_cli, 'app_bundle'
    for prefix in homebrew_prefixes or ():
        candidate = os.path.join(prefix, 'bin', 'tailscale')
        searched.append(candidate)
        if is_executable(candidate):
            return candidate, 'homebrew'
    raise CliNotFound('no Tailscale CLI found; searched %s' % ', '.join(searched), searched)


def parse_status(text):
    """Parse the stdout of ``tailscale status --json`` into a dict.

    The fields used are those of ``ipnstate.Status`` / ``ipnstate.PeerStatus`` (ipn/ipnstate/ipnstate.go):
    ``BackendState``, ``Self``, ``Peer`` (keyed by node key, ``null`` without peers), and per node
    ``HostName``, ``DNSName``, ``TailscaleIPs``, ``Online``, ``LastSeen``, ``CurAddr``, ``Relay``, ``OS``.
    Raises :class:`StatusError` when the text is not a JSON object with a ``BackendState``.
    """
    try:
        status = json.loads(text)
    except ValueError as exc:
        excerpt = (text or '').strip()[:200]
        raise StatusError('not valid JSON (%s): %r' % (exc, excerpt))
    if not isinstance(status, dict) or 'BackendState' not in status:
        raise StatusError('not a Tailscale status: a JSON object with BackendState was wanted, got %s'
                          % json.dumps(status)[:200])
    return status


def first_ipv4(addresses):
    """First IPv4 address of ``addresses`` (strings, as in ``TailscaleIPs``), or None."""
    for text in addresses or ():
        try:
            if ipaddress.ip_address(text).version == 4:
                return text
        except ValueError:
            continue
    return None


def node_names(node):
    """``(dns_label, hostname)`` of a status node, lower case (``''`` when absent).

    ``dns_label`` is the first label of ``DNSName`` (``beta.tail0000.ts.net.`` -> ``beta``), the name
    MagicDNS and ``tailscale ping`` use; ``hostname`` is ``HostName`` (the OS hostname the node reported).
    """
    dns = (node.get('DNSName') or '').strip().rstrip('.')
    return dns.split('.')[0].lower(), (node.get('HostName') or '').strip().lower()


def match_peer(status, name):
    """Return ``(node, candidates)``: the ``Peer`` entry named ``name`` (case-insensitive), or None.

    A ``DNSName`` first label match wins over a ``HostName`` match (a re-added machine keeps its
    ``HostName`` and gets a new DNS name like ``beta-1``). Of several matches only an online one is chosen
    when it is the only online one; otherwise ``node`` is None and ``candidates`` lists the matches.
    """
    wanted = name.strip().lower()
    peers = list((status.get('Peer') or {}).values())
    candidates = [node for node in peers if node_names(node)[0] == wanted]
    if not candidates:
        candidates = [node for node in peers if node_names(node)[1] == wanted]
    if len(candidates) == 1:
        return candidates[0], candidates
    online = [node for node in candidates if node.get('Online') is True]
    if len(online) == 1:
        return online[0], candidates
    return None, candidates


def _peer_label(entry):
    return 'peer %s (inventory host %s)' % (entry['name'], entry['host'])


def _describe_node(node):
    return '%s (HostName %s, %s)' % ((node.get('DNSName') or '?').rstrip('.'), node.get('HostName') or '?',
                                     ', '.join(node.get('TailscaleIPs') or []) or 'no IPs')


def check_peers(status, peers, self_name):
    """Compare the status with the cluster's nodes; return ``(nodes, problems)``.

    ``peers`` is a list of ``{name, host, address}`` (address may be None), ``self_name`` the ``name`` of
    this node's entry. ``nodes`` has one dict per entry (see the module's RETURN ``peers``); ``problems`` a
    sentence per problem: this node not being ``Self`` or offline, another node absent from ``Peer``,
    ambiguous or offline, a node without a Tailscale IPv4, or an IPv4 other than the inventory's address.
    """
    problems = []
    nodes = []
    wanted_self = self_name.strip().lower()
    for entry in peers:
        is_self = entry['name'].strip().lower() == wanted_self
        label = _peer_label(entry)
        record = dict(host=entry['host'], name=entry['name'], self=is_self, found=False, online=None,
                      tailscale_ipv4=None, tailscale_ips=[], address=entry.get('address'),
                      address_source='inventory' if entry.get('address') else None,
                      hostname=None, dns_name=None, os=None, cur_addr=None, relay=None, last_seen=None)
        if is_self:
            node = status.get('Self')
            if not node:
                problems.append('this node (%s) has no Self in the status' % label)
            elif wanted_self not in node_names(node):
                problems.append('this node is Tailscale machine %s, but the inventory calls it %s (inventory host '
                                '%s); set its Tailscale name in the inventory' % (_describe_node(node),
                                                                                entry['name'], entry['host']))
                node = None
        else:
            node, candidates = match_peer(status, entry['name'])
            if node is None and candidates:
                problems.append('%s matches %d machines in this tailnet\'s status, none of them the only online one: '
                                '%s' % (label, len(candidates), '; '.join(_describe_node(n) for n in candidates)))
            elif node is None:
                known = sorted(set(node_names(n)[0] or node_names(n)[1] for n in (status.get('Peer') or {}).values()))
                problems.append('%s is not in this tailnet\'s status (peers seen: %s)'
                                % (label, ', '.join(known) or 'none'))
        if node is None:
            nodes.append(record)
            continue

        ips = list(node.get('TailscaleIPs') or [])
        ipv4 = first_ipv4(ips)
        # Self's Online is false or absent in some releases' status JSON; a running Self is online.
        online = node.get('Online', True) if is_self else node.get('Online') is True
        record.update(found=True, online=bool(online), tailscale_ipv4=ipv4, tailscale_ips=ips,
                      hostname=node.get('HostName'), dns_name=node.get('DNSName'), os=node.get('OS'),
                      cur_addr=node.get('CurAddr'), relay=node.get('Relay'), last_seen=node.get('LastSeen'))
        if not online:
            last_seen = node.get('LastSeen')
            seen = 'never' if not last_seen or last_seen == GO_ZERO_TIME else last_seen
            problems.append('%s is offline (Online=false, LastSeen %s)' % (label, seen))
        if ipv4 is None:
            problems.append('%s has no Tailscale IPv4 (TailscaleIPs %s)' % (label, ips or 'empty'))
        elif entry.get('address') and entry['address'] != ipv4:
            problems.append('%s: Tailscale IPv4 %s, inventory says %s' % (label, ipv4, entry['address']))
        elif not entry.get('address'):
            record.update(address=ipv4, address_source='tailscale')
        nodes.append(record)
    return nodes, problems


def parse_go_duration_ms(text):
    """Milliseconds in a Go ``time.Duration.String()`` such as ``3ms``, ``1.204s``, ``1m2.5s`` or ``0s``.

    Raises ValueError for anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError('empty duration')
    total = 0.0
    position = 0
    for match in GO_DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * GO_DURATION_MS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError('not a Go duration: %r' % text)
    return total


def is_relay_via(via):
    """Whether a pong's ``via`` is a relay: ``DERP(<code>)`` or ``peer-relay(<addr>)``, not an ``ip:port``."""
    return via.startswith('DERP(') or via.startswith('peer-relay(')


def parse_ping_output(text):
    """Summarise the output (stdout and stderr) of ``tailscale ping``.

    Returns ``{path, latency_ms, latencies_ms, pongs, timeouts, via, direct_not_established, lines}``:
    ``path`` is ``direct`` when any reply came over a direct endpoint, ``relay`` when replies came only via
    ``DERP(...)`` or ``peer-relay(...)``, ``none`` without reply; ``latency_ms`` is the median (milliseconds)
    of the replies over that path and ``via`` the last of them. Line formats: see ``PONG_RE`` and
    ``TIMEOUT_RE`` (cmd/tailscale/cli/ping.go). Unrecognised lines are kept in ``lines`` only.
    """
    pongs = []
    timeouts = 0
    not_established = False
    lines = [line.rstrip() for line in (text or '').splitlines() if line.strip()]
    for line in lines:
        match = PONG_RE.match(line.strip())
        if match:
            try:
                latency = parse_go_duration_ms(match.group('latency'))
            except ValueError:
                continue
            pongs.append(dict(via=match.group('via'), latency_ms=latency, relay=is_relay_via(match.group('via'))))
        elif TIMEOUT_RE.match(line.strip()):
            timeouts += 1
        elif line.strip() == 'direct connection not established':
            not_established = True
    direct = [pong for pong in pongs if not pong['relay']]
    if direct:
        path, chosen = 'direct', direct
    elif pongs:
        path, chosen = 'relay', pongs
    else:
        path, chosen = 'none', []
    return dict(
        path=path,
        latency_ms=float(statistics.median([pong['latency_ms'] for pong in chosen])) if chosen else None,
        latencies_ms=[pong['latency_ms'] for pong in pongs],
        pongs=len(pongs),
        timeouts=timeouts,
        via=chosen[-1]['via'] if chosen else None,
        direct_not_established=not_established,
        lines=lines,
    )


def go_duration(seconds):
    """``seconds`` as a Go duration flag value: ``5s``, or ``2500ms`` when not a whole number of seconds."""
    millis = max(1, int(round(seconds * 1000)))
    return '%ds' % (millis // 1000) if millis % 1000 == 0 else '%dms' % millis


def ping_argv(cli, address, count, timeout):
    """``tailscale ping`` command line; flags go before the address (Go's flag package stops at the first
    argument). ``timeout`` is in seconds."""
    return [cli, 'ping', '-c', str(count), '--timeout', go_duration(timeout), address]


def ping_bound(count, timeout):
    """Seconds one ``tailscale ping`` may run: each try waits ``timeout``, plus 1 s after a relayed reply."""
    return count * (timeout + 1.0) + PING_SLACK_SECONDS


def run_cli(argv, timeout):
    """Run ``argv``; return ``(rc, stdout, stderr, timed_out)``, text. On timeout the process is killed and
    ``rc`` is None; the output printed so far is kept."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return None, _text(exc.stdout), _text(exc.stderr), True
    except OSError as exc:
        return 127, '', str(exc), False
    return proc.returncode, _text(proc.stdout), _text(proc.stderr), False


def _text(data):
    if data is None:
        return ''
    if isinstance(data, bytes):
        return data.decode('utf-8', errors='replace')
    return data


def _check_params(params):
    """Return ``(problem_or_None, peers)``: the peers with ``host`` filled in, after validation."""
    peers = []
    seen = {}
    for entry in params['peers'] or []:
        name = (entry.get('name') or '').strip()
        if not name:
            return 'peers: every entry needs a non-empty name, got %r' % (entry,), []
        host = entry.get('host') or name
        address = entry.get('address') or None
        if address is not None:
            try:
                if ipaddress.ip_address(address).version != 4:
                    raise ValueError(address)
            except ValueError:
                return ('%s: peers entry %s has address %r, wanted an IPv4 address (or null to take the '
                        'Tailscale IPv4)' % (host, name, address)), []
        if name.lower() in seen:
            return ('peers lists Tailscale name %s twice (inventory hosts %s and %s); wanted one entry per machine'
                    % (name, seen[name.lower()], host)), []
        seen[name.lower()] = host
        peers.append(dict(name=name, host=host, address=address))
    if not peers:
        return 'peers must list at least this node, got an empty list', []
    if params['self_name'].strip().lower() not in seen:
        return ('self_name %s is not the name of any peers entry (%s)'
                % (params['self_name'], ', '.join(p['name'] for p in peers))), []
    here = seen[params['self_name'].strip().lower()]
    if params['ping_count'] < 1:
        return '%s: ping_count must be >= 1 (0 means no limit to tailscale ping), got %d' % (
            here, params['ping_count']), []
    if not params['ping_timeout'] > 0:
        return '%s: ping_timeout must be > 0 seconds, got %s' % (here, params['ping_timeout']), []
    return None, peers


def _ping_peer(cli, record, count, timeout):
    """Ping one other node; return ``(entry, problem_or_None, warning_or_None)``."""
    entry = dict(host=record['host'], name=record['name'], address=record['tailscale_ipv4'], pinged=False,
                 path='none', latency_ms=None, latencies_ms=[], pongs=0, timeouts=0, via=None, rc=None, output=[])
    if not (record['found'] and record['online'] and record['tailscale_ipv4']):
        return entry, None, None  # already reported by check_peers
    bound = ping_bound(count, timeout)
    rc, out, err, timed_out = run_cli(ping_argv(cli, record['tailscale_ipv4'], count, timeout), bound)
    summary = parse_ping_output(out + '\n' + err)
    entry.update(pinged=True, path=summary['path'], latency_ms=summary['latency_ms'],
                 latencies_ms=summary['latencies_ms'], pongs=summary['pongs'], timeouts=summary['timeouts'],
                 via=summary['via'], rc=rc, output=summary['lines'])
    target = '%s at %s' % (_peer_label(record), record['tailscale_ipv4'])
    if summary['path'] == 'none':
        if timed_out:
            why = 'tailscale ping did not finish within %g s' % bound
        elif summary['timeouts']:
            why = '%d of %d pings timed out after %g s each' % (summary['timeouts'], count, timeout)
        else:
            why = 'tailscale ping exited %s' % rc
        tail = ' | '.join(summary['lines'][-3:])
        return entry, '%s did not answer tailscale ping (%s)%s' % (target, why, (': ' + tail) if tail else ''), None
    if summary['path'] == 'relay':
        return entry, None, ('%s answers only through a relay (%s, median %.0f ms over %d replies): no direct '
                             'connection, so Ray traffic to it is relayed and slow; check UDP 41641 and the NAT '
                             'between the nodes' % (target, summary['via'], summary['latency_ms'], summary['pongs']))
    return entry, None, None


def run_check(module):
    """Do the work; return ``(error_message_or_None, result_dict)``."""
    params = module.params
    result = dict(changed=False, searched=[], problems=[])
    problem, peers = _check_params(params)
    if problem:
        result['problems'] = [problem]
        return problem, result
    here = [p for p in peers if p['name'].lower() == params['self_name'].strip().lower()][0]
    host = here['host']

    try:
        cli, source = find_cli(params['cli'], None, params['app_cli'], params['homebrew_prefixes'])
    except CliNotFound as exc:
        result.update(searched=exc.searched, problems=[str(exc)])
        hint = '' if params['cli'] else '; install Tailscale or set the cli option (saf_tailscale_cli)'
        return '%s: %s%s' % (host, exc, hint), result
    result.update(cli=cli, cli_source=source)

    rc, out, err, timed_out = run_cli([cli, 'status', '--json'], STATUS_TIMEOUT_SECONDS)
    if timed_out or rc != 0:
        what = ('did not finish within %g s' % STATUS_TIMEOUT_SECONDS) if timed_out else ('exited %s' % rc)
        detail = (err or out).strip()[:500]
        result['problems'] = ['tailscale status --json %s' % what]
        return '%s: %s status --json %s: %s' % (host, cli, what, detail or 'no output'), result
    try:
        status = parse_status(out)
    except StatusError as exc:
        result['problems'] = ['tailscale status --json: %s' % exc]
        return '%s: %s status --json printed %s' % (host, cli, exc), result
    state = status.get('BackendState')
    result.update(backend_state=state, version=status.get('Version'))
    if state != 'Running':
        hint = STATE_HINTS.get(state, 'see tailscale status')
        message = 'Tailscale is not running on this node: BackendState is %s, wanted Running (%s)' % (state, hint)
        result['problems'] = [message]
        return '%s: %s' % (host, message), result

    nodes, problems = check_peers(status, peers, params['self_name'])
    self_status = status.get('Self') or {}
    result.update(
        ping_scope=PING_SCOPE,
        peers=nodes,
        self_node=dict(name=here['name'], host=host, tailscale_ipv4=first_ipv4(self_status.get('TailscaleIPs')),
                  dns_name=self_status.get('DNSName')),
    )
    pings = []
    for record in nodes:
        if record['self']:
            continue
        entry, problem, warning = _ping_peer(cli, record, params['ping_count'], params['ping_timeout'])
        pings.append(entry)
        if problem:
            problems.append(problem)
        if warning:
            module.warn('%s: %s' % (host, warning))
    result.update(ping=pings, problems=problems)
    if problems:
        return ('%s: the tailnet is not ready for the Ray cluster (%d problem%s): %s'
                % (host, len(problems), '' if len(problems) == 1 else 's',
                   '; '.join('%d) %s' % (i, p) for i, p in enumerate(problems, 1)))), result
    return None, result


def this_host(params):
    """Name of the node the module runs on, for messages: the inventory host of the O(peers) entry named
    O(self_name), else the machine's hostname."""
    try:
        wanted = (params.get('self_name') or '').strip().lower()
        for entry in params.get('peers') or []:
            if wanted and (entry.get('name') or '').strip().lower() == wanted:
                return entry.get('host') or entry['name']
    except (AttributeError, KeyError, TypeError):
        pass
    return socket.gethostname()


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        error, result = run_check(module)
    except Exception as exc:  # anything unforeseen: a failed result naming the node, never a MODULE FAILURE
        message = '%s: saf_tailscale_check stopped on an unexpected error: %s: %s' % (
            this_host(module.params), type(exc).__name__, exc)
        module.fail_json(msg=message, exception=traceback.format_exc(), changed=False, searched=[],
                         problems=[message])
    if error:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
