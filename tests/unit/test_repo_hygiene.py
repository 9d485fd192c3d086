"""What the repository itself must never contain: real addresses, private keys, and anything that
weakens Ray's version check.

Every file git tracks is read (the files of a fresh clone). Addresses may only come from ranges
nobody owns: RFC 5737 documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), RFC 2544
benchmarking (198.18.0.0/15, the lab's own subnet), loopback and the unspecified address, plus
100.64.0.0/24, the bottom of the RFC 6598 shared range that Tailscale assigns from, for placeholder
tailnet addresses in the Tailscale samples.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALLOWED = [ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "127.0.0.0/8", "0.0.0.0/32",
    "100.64.0.0/24")]
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
PRIVATE_KEY = re.compile("-----BEGIN [A-Z ]*" + "PRIVATE KEY-----")
# Ways to weaken Ray's version check (ray/_private/utils.py check_version_info, Ray Client's
# ignore_version and its environment switch, `ray health-check --skip-version-check`).
VERSION_CHECK_BYPASSES = [
    re.compile(p) for p in (
        "RAY_IGNORE_" + "VERSION_MISMATCH",
        r"ignore_version\s*=\s*True",
        r"raise_on_mismatch\s*=\s*False",
        r"python_version_match_level\s*=\s*['\"]minor",
        r"(check_version_info|compute_version_info|_check_ray_version)\s*=(?!=)",
        r"setattr\([^)]*(check_version_info|compute_version_info|_check_ray_version)",
        "--skip-" + "version-check",
    )
]


def tracked_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        path = REPO / name
        if name and path.is_file():
            try:
                yield name, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


FILES = dict(tracked_files())


def test_the_scan_sees_the_repository():
    assert "site.yml" in FILES and "library/saf_mlx_probe.py" in FILES


def addresses_outside_allowed(text):
    found = []
    for match in IPV4.finditer(text):
        try:
            address = ipaddress.ip_address(match.group())
        except ValueError:  # 999.1.1.1 and the like are not addresses
            continue
        if not any(address in net for net in ALLOWED):
            found.append(match.group())
    return found


@pytest.mark.parametrize("text, found", [
    ("ssh 192.0.2.7 and 198.18.0.12", []),
    ("the old head was 10.0.0.5", ["10.0.0.5"]),
    ("tailnet peer 100.101.102.103", ["100.101.102.103"]),
    ("a dotted version 1.2.3.4.5 is no address", []),
])
def test_address_scan_itself(text, found):
    assert addresses_outside_allowed(text) == found


def test_no_addresses_outside_documentation_ranges():
    this = str(Path(__file__).relative_to(REPO))  # its own examples above
    hits = {name: addresses_outside_allowed(text) for name, text in FILES.items() if name != this}
    assert {name: found for name, found in hits.items() if found} == {}


def test_no_private_keys():
    assert [name for name, text in FILES.items() if PRIVATE_KEY.search(text)] == []


def test_nothing_weakens_rays_version_check():
    this = str(Path(__file__).relative_to(REPO))
    hits = [(name, pattern.pattern) for name, text in FILES.items() if name != this
            for pattern in VERSION_CHECK_BYPASSES if pattern.search(text)]
    assert hits == []


@pytest.mark.parametrize("text", [
    "os.environ['RAY_IGNORE_" + "VERSION_MISMATCH'] = '1'",
    "ray.util.client.ray.connect(addr, ignore_version=True)",
    "ray._private.utils.check_version_info = lambda *a, **k: None",
    "monkeypatch.setattr(utils, 'check_version_info', noop)",
])
def test_version_check_scan_itself(text):
    assert any(pattern.search(text) for pattern in VERSION_CHECK_BYPASSES)
