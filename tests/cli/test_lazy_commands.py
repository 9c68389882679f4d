"""The CLI imports a subcommand's module only when it runs, and lists every one in --help."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from personal_connectors.cli.main import ConnectorsGroup, app

HEAVY = ("sqlalchemy", "fastapi", "uvicorn", "alembic", "httpx", "personal_connectors.runtime")


def test_help_lists_every_command_without_importing_the_service() -> None:
    probe = (
        "import sys; from personal_connectors.cli.main import app\n"
        "try: app(['--help'])\nexcept SystemExit: pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stderr.strip() == "[]"
    for name, entry in ConnectorsGroup.lazy.items():
        assert name in result.stdout and entry.help.split()[0] in result.stdout
    assert "serve" in result.stdout and "migrate" in result.stdout


def test_every_listed_command_loads_with_its_help() -> None:
    runner = CliRunner()
    for name, entry in ConnectorsGroup.lazy.items():
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert entry.help.split()[0] in result.output


def test_a_group_with_one_command_keeps_its_command_name() -> None:
    result = CliRunner().invoke(app, ["events", "list", "--help"])
    assert result.exit_code == 0 and "--connection" in result.output


def test_an_unknown_command_is_refused() -> None:
    result = CliRunner().invoke(app, ["nope"])
    assert result.exit_code == 2 and "No such command" in result.output
