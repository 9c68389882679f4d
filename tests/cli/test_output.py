"""What the CLI prints of stored text — account names and emails a provider supplied, anything
an API caller wrote — reaches the operator's terminal as inert text: no Rich markup read from
it, no escape sequence passed through."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from tests.conftest import Tenant
from tests.flows.conftest import connect
from tests.support.db import update_connection
from tests.support.service import ServiceProcess

MARKUP = "[link=https://evil.example/]support[/link]"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
# Rich writes colours and links only to a terminal: FORCE_COLOR makes it believe it has one.
TERMINAL = {"FORCE_COLOR": "1", "COLUMNS": "400"}


def test_a_provider_supplied_email_is_shown_literally_in_the_connections_table(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    # As a provider's userinfo could answer it: markup and a terminal hyperlink in the email.
    update_connection(service, connection_id, account_email=f"{MARKUP}{OSC8}@example.test")

    shown = service.cli("connections", "list", "--org", tenant.organization_id, env=TERMINAL).stdout

    assert connection_id in shown
    assert "\x1b]8;" not in shown  # no hyperlink, neither the stored one nor one Rich made
    assert MARKUP in shown  # the markup is printed as the text it is
    assert "\\x1b]8;;https://evil.example/" in shown  # the escape character made visible


def test_an_error_message_shows_markup_as_text_and_escape_characters_made_visible(
    service: ServiceProcess, tmp_path: Path
) -> None:
    providers = tmp_path / "providers.yaml"
    providers.write_text(yaml.safe_dump({f"x{MARKUP}\x1b[2J": {"display_name": 5}}))
    failed = service.cli("providers", "check", str(providers), check=False, env=TERMINAL)
    assert failed.returncode != 0
    assert "\x1b[2J" not in failed.stderr and "\x1b]8;" not in failed.stderr
    assert "\\x1b[2J" in failed.stderr, failed.stderr
