#!/usr/bin/python
# -*- coding: utf-8 -*-
"""TEST DOUBLE: a facts module that makes a Linux lab host report itself as a Mac Studio.

Used only by tests/lab/test_4_macos.py, which lists it after ``ansible.builtin.setup`` in
``ansible_facts_modules`` (with ``ansible_facts_parallel: false``, so its facts win). On a host
where ``ROOT/FORCE_DARWIN_FACTS`` exists it overrides the OS facts with a Mac Studio's (macOS 15,
arm64) and points ``env.HOME`` at ``ROOT/Users/<user>``, the host's re-rooted Mac home; on any
other host it returns no facts. Nothing else about the host changes: it is still Linux, so every
macOS program the roles call must be a test double (tests/doubles/bin).
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: saf_test_darwin_facts
short_description: TEST DOUBLE - report macOS facts on a marked Linux lab host
description:
  - Overrides the OS facts of a lab host marked with C(ROOT/FORCE_DARWIN_FACTS) so the roles take their macOS branch.
options:
  root:
    description: The host's re-rooted Mac tree.
    type: path
    default: /opt/saf/macos
  user:
    description: The Mac account whose home C(env.HOME) points at, under C(ROOT/Users).
    type: str
    default: saf
author: SAF
"""

RETURN = r"""
ansible_facts:
  description: macOS facts (system, os_family, distribution*, machine, architecture, env.HOME), or none when the host is not marked.
  returned: always
  type: dict
"""


def darwin_facts(root, user, env):
    """The facts a Mac Studio (M3 Ultra, macOS 15.6) reports, with HOME re-rooted under ``root``."""
    return {
        "system": "Darwin",
        "os_family": "Darwin",
        "distribution": "MacOSX",
        "distribution_version": "15.6",
        "distribution_major_version": "15",
        "distribution_release": "24.6.0",
        "kernel": "24.6.0",
        "machine": "arm64",
        "architecture": "arm64",
        "service_mgr": "launchd",
        "env": dict(env, HOME=os.path.join(root, "Users", user)),
    }


def main():
    module = AnsibleModule(argument_spec={"root": {"type": "path", "default": "/opt/saf/macos"},
                                          "user": {"type": "str", "default": "saf"}},
                           supports_check_mode=True)
    root = module.params["root"]
    facts = {}
    if os.path.exists(os.path.join(root, "FORCE_DARWIN_FACTS")):
        facts = darwin_facts(root, module.params["user"], dict(os.environ))
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
