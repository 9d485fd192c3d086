"""testinfra specs of SAF nodes, checked from outside over the inventory's own connection.

Run against the lab (what `make test` does) or a real inventory:

    .venv/bin/pytest verify --hosts='ansible://saf_cluster' --ansible-inventory=inventory/lab --force-ansible
    .venv/bin/pytest verify --hosts='ansible://saf_cluster' --ansible-inventory=inventory/studio --force-ansible

Each node's wanted state is the record site.yml writes there (``<saf_root_dir>/ray/start.json``:
the Ray command line, venv, interpreter and runtime tuple), so the specs need no copy of the
inventory's variables. ``SAF_ROOT_DIR`` names saf_root_dir when it is not /opt/saf.
"""

from __future__ import annotations

import json
import os

import pytest

SAF_ROOT_DIR = os.environ.get("SAF_ROOT_DIR", "/opt/saf")


@pytest.fixture(scope="module")
def record(host):
    """The start record site.yml left on this node (dict), or a failure saying it is missing."""
    path = f"{SAF_ROOT_DIR}/ray/start.json"
    record_file = host.file(path)
    assert record_file.exists, f"{host.backend.hostname}: no {path}; run site.yml first"
    return json.loads(record_file.content_string)
