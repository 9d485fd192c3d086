"""Tailscale after a restart (issue 17, row e): tailscale_network, run over a local connection
against the Tailscale CLI double in the app bundle's place, says so when this Mac's Tailscale is
the app (App Store or Standalone), which connects only in a logged-in session
(tailscale/tailscale#729), and names the system daemon variant, tailscaled, which starts at boot.
A Mac with a tailscaled LaunchDaemon (``tailscaled install-system-daemon``, or Homebrew's
``brew services`` as root) gets no word. The playbook run is shared with the other
unattended-restart tests (tests/unit/mac_harness.py ``unattended_run``).
"""

from __future__ import annotations

import pytest

from mac_harness import needs_root, unattended_run

pytestmark = needs_root


def test_the_tailscale_app_is_named_with_the_system_daemon_variant():
    macs, run = unattended_run()
    assert not run.failed("TS_APP"), run
    cli = macs["TS_APP"].bin / "tailscale"
    assert run.said(f"TS_APP: Tailscale runs here as the Tailscale app ({cli}), which connects only in a "
                    "logged-in session (tailscale/tailscale#729)"), run
    assert run.said("use Tailscale's system daemon variant, tailscaled, which starts at boot"), run
    assert run.said("`sudo tailscaled install-system-daemon`"), run


@pytest.mark.parametrize("host", ["TS_DAEMON", "TS_BREW"])
def test_a_tailscaled_launch_daemon_gets_no_word(host):
    _, run = unattended_run()
    assert not run.failed(host), run
    assert "TASK [tailscale_network : Check this node's Tailscale status" in run.output
    assert not run.said(f"{host}: Tailscale runs here as"), run
