"""The MCP SDK is imported when an MCP server or the gateway is first used, not at start-up
(its import is about half a second of CPU: bench/startup.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_application_and_the_connection_checks_load_without_the_mcp_sdk() -> None:
    code = (
        "import sys\n"
        "from personal_connectors.app import create_app\n"
        "import personal_connectors.connections.checks\n"
        "import personal_connectors.mcp_servers.endpoints\n"
        "create_app()\n"
        "print(sorted(m for m in ('mcp', 'httpx2') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
