"""Libraries a start does not need are imported when first used: the MCP SDK (an MCP server or
the gateway; about half a second of CPU), the JOSE library (token exchange, JWT assertions,
key sets; about 60 ms) and Jinja2 (the pages; about 15 ms), so that `serve` answers /readyz within its second (bench/startup.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_application_loads_without_the_mcp_sdk_the_jose_library_or_jinja2() -> None:
    code = (
        "import sys\n"
        "from personal_connectors.app import create_app\n"
        "import personal_connectors.connections.checks\n"
        "import personal_connectors.mcp_servers.endpoints\n"
        "create_app()\n"
        "print(sorted(m for m in ('mcp', 'httpx2', 'joserfc', 'jinja2') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
