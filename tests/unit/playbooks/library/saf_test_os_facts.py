#!/usr/bin/python
# -*- coding: utf-8 -*-
"""TEST DOUBLE: a facts module that makes the controller report another OS (SAF_TEST_OS).

Used by tests/unit/test_os_dispatch.py, listed after ansible.builtin.setup in FACTS_MODULES so its
facts win: system, os_family and distribution become the value of the environment variable
SAF_TEST_OS on the controller (an OS no role has files for). Nothing else changes.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: saf_test_os_facts
short_description: TEST DOUBLE - report the OS named by SAF_TEST_OS
description:
  - Overrides the facts system, os_family and distribution with the value of C(SAF_TEST_OS).
author: SAF
"""


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    name = os.environ.get("SAF_TEST_OS", "")
    facts = {"system": name, "os_family": name, "distribution": name} if name else {}
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
