"""Mitogen's ``mitogen_linear`` strategy, from the ``mitogen`` package pinned in requirements.txt.

Mitogen (https://mitogen.networkgenomics.com/ansible_detailed.html) keeps one Python interpreter
per node over the SSH connection and runs each task's module in it, instead of copying the module
and starting a new interpreter for every task. Play semantics are those of Ansible's ``linear``
strategy. Measured on the lab (docs/performance.md): a cold ``site.yml`` went from 36.7 s to 26.8 s.

Ansible finds strategy plugins by directory, and the package's own directory lies inside the venv
under a path that names the Python version; this file re-exports the package's class instead, so
``ansible.cfg`` can name a directory of the repository. Without Mitogen, run with
``ANSIBLE_STRATEGY=linear``.

Raises ImportError (naming the ``mitogen`` package) when the package is not installed.
"""

from __future__ import annotations

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the controller's packages
    raise ImportError(
        "the mitogen_linear strategy needs the mitogen package: pip install -r requirements.txt "
        "(or run with ANSIBLE_STRATEGY=linear)") from exc
