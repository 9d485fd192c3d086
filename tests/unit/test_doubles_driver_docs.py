"""A user's own driver on a Mac: docs/macos.md's example gives it what Ray on macOS needs to reach the
cluster, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 (without it Ray takes 127.0.0.1 as the node's address,
ray-project/ray#30770) and the node's tailnet address as ``_node_ip_address``, which Ray 2.49.2
reads from no environment variable; and it runs on the cluster's venv.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "macos.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", DOC, re.M | re.S)
    assert match, f"docs/macos.md has no section '## {title}'"
    return match.group(1)


def test_the_driver_example_sets_the_switch_and_the_node_address_before_ray_init():
    text = section("Your own drivers on a Mac")
    (shell,) = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = shell.splitlines()
    assert lines[0] == "export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1", shell
    assert lines[1] == "export RAY_NODE_IP_ADDRESS=$(tailscale ip -4)", shell
    assert lines[2] == "/opt/saf/venv/bin/python - <<'PY'", "the cluster's Python runs the driver"
    program = shell.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    calls = [node for node in ast.walk(ast.parse(program)) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", "") == "init"]
    assert len(calls) == 1, program
    keywords = {keyword.arg: ast.unparse(keyword.value) for keyword in calls[0].keywords}
    assert keywords["_node_ip_address"] == "os.environ['RAY_NODE_IP_ADDRESS']", keywords
    assert re.fullmatch(r"'198\.18\.0\.\d+:6380'", keywords["address"]), "the head's GCS port (saf_ray_gcs_port)"
    assert "ray-project/ray#30770" in text and "Ray itself\n  does not read it" in text
