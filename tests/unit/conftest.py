# -*- coding: utf-8 -*-
"""pytest setup for the SAF unit tests (controller: Python 3.11, ansible-core, no Ray, no MLX).

* ``ansible.module_utils.saf_ray`` is importable: the repository's ``module_utils``
  directory is appended to ``ansible.module_utils.__path__`` (what ansible.cfg's
  ``module_utils = module_utils`` does for AnsiballZ).
* ``library/`` is on ``sys.path`` so the tests can ``import saf_mlx_probe``.
* ``tests/unit`` itself is on ``sys.path`` for the harness and the test double.
"""

from __future__ import annotations

import os
import sys

import ansible.module_utils

UNIT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(UNIT_DIR))
MODULE_UTILS_DIR = os.path.join(REPO_ROOT, 'module_utils')
LIBRARY_DIR = os.path.join(REPO_ROOT, 'library')

if MODULE_UTILS_DIR not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(MODULE_UTILS_DIR)
for path in (LIBRARY_DIR, UNIT_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)
