"""The client is for platforms' code: importing it loads httpx and the standard library, never
a module of the server or one of the server's own dependencies. (The import-linter contract
in pyproject.toml keeps the package itself from importing the server's packages.)"""

from __future__ import annotations

import json
import subprocess
import sys

# The import names of the server's dependencies that the client must not load (pyproject.toml
# lists them; httpx, which the client is built on, and what httpx itself needs are left out).
SERVER_DEPENDENCIES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "authlib",
    "cryptography",
    "typer",
    "rich",
    "yaml",
    "jinja2",
    "tenacity",
    "standardwebhooks",
    "ada_url",
    "joserfc",
)


def loaded_after(statement: str) -> set[str]:
    program = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(run.stdout))


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    loaded = loaded_after("from personal_connectors.client import AsyncConnectors, Connectors")
    ours = {name for name in loaded if name.split(".")[0] == "personal_connectors"}
    assert ours, "the client was not imported"
    assert all(
        name in ("personal_connectors", "personal_connectors.client")
        or name.startswith("personal_connectors.client.")
        for name in ours
    ), sorted(ours)
    # httpx loads some of them itself when they are installed (rich, for its command line).
    added = loaded - loaded_after("import httpx")
    assert not {name.split(".")[0] for name in added} & set(SERVER_DEPENDENCIES)


def test_the_check_sees_a_server_module() -> None:
    """The checks above would notice: a server package loads more of the package and the
    server's dependencies."""
    added = loaded_after("import personal_connectors.config") - loaded_after("import httpx")
    assert "personal_connectors.config" in added and "pydantic" in added
