"""``authorize`` and ``complete`` through the real OpenID provider: the typed answers of every
stage (not back yet, connected, refused), explicit completion, ``wait`` woken by the callback,
the launch URL in a browser, and an unknown state token refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from personal_connectors.client import Completion, Connectors, ConnectorsError
from tests.client.conftest import consent
from tests.conftest import PROVIDER_KEY
from tests.connect_page.conftest import browser, launch
from tests.flows.conftest import follow_callback
from tests.support.oidc import OidcProvider, login_and_consent
from tests.support.protected_mcp_server import ProtectedMcpServer
from tests.support.service import ServiceProcess


def test_authorize_then_complete_once_the_user_consented(
    pc: Connectors, oidc: OidcProvider, service: ServiceProcess
) -> None:
    started = pc.authorize(PROVIDER_KEY, scopes=["email"])
    assert started.authorization_url.startswith(oidc.metadata["authorization_endpoint"])
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert query["state"] == [started.state_token] and query["code_challenge_method"] == ["S256"]
    assert started.launch_url and started.launch_url.startswith(f"{service.api}/flows/launch")
    assert started.url == started.launch_url

    waiting = pc.complete(started.state_token)
    assert waiting.connected is False and waiting.connection is None and waiting.error is None

    connection_id = consent(started.authorization_url, login="client-flow")

    done = pc.complete(started.state_token)
    assert done.connected is True and done.error is None
    assert done.connection is not None
    assert (done.connection.id, done.connection.app_key) == (connection_id, PROVIDER_KEY)
    assert pc.complete(started.state_token) == done  # idempotent
    assert [c.id for c in pc.connections()] == [connection_id]


def test_explicit_completion_makes_the_connection_at_complete(pc: Connectors) -> None:
    started = pc.authorize(PROVIDER_KEY, completion="explicit")
    callback = follow_callback(login_and_consent(started.authorization_url, login="explicit"))
    assert callback.status_code == 200, callback.text
    assert pc.connections() == []  # not before the platform completes it

    done = pc.complete(started.state_token)
    assert done.connected and done.connection is not None
    assert [c.id for c in pc.connections()] == [done.connection.id]


def test_a_refusal_at_the_provider_comes_back_as_the_flow_error(pc: Connectors) -> None:
    started = pc.authorize(PROVIDER_KEY)
    follow_callback(login_and_consent(started.authorization_url, deny=True))
    refused = pc.complete(started.state_token)
    assert refused.connected is False and refused.connection is None
    assert refused.error is not None and refused.error.code == "access_denied"


def test_complete_with_wait_returns_when_the_callback_finishes_the_flow(pc: Connectors) -> None:
    started = pc.authorize(PROVIDER_KEY)
    answers: list[Completion] = []
    waiting = threading.Thread(
        target=lambda: answers.append(pc.complete(started.state_token, wait=60))
    )
    waiting.start()
    connection_id = consent(started.authorization_url, login="client-wait")
    waiting.join()
    [answer] = answers
    assert answer.connected and answer.connection is not None
    assert answer.connection.id == connection_id


def test_the_launch_url_connects_in_the_browser_that_opens_it(
    pc: Connectors, service: ServiceProcess
) -> None:
    started = pc.authorize(PROVIDER_KEY)
    assert started.launch_url is not None
    person = browser(service)
    to_provider = launch(person, started.launch_url)
    assert to_provider.is_redirect, to_provider.text
    back = login_and_consent(to_provider.headers["location"], login="client-launch")
    callback = person.get(back, headers={"Accept": "application/json"})
    assert callback.status_code == 200, callback.text
    done = pc.complete(started.state_token)
    assert done.connected and done.connection is not None


def test_an_unknown_state_token_is_refused(pc: Connectors) -> None:
    with pytest.raises(ConnectorsError) as refused:
        pc.complete("state_" + "A" * 43)
    error = refused.value
    assert (error.code, error.status) == ("VALIDATION_ERROR", 400)
    assert error.system_message == "Invalid or expired state token."


@pytest.fixture(scope="module")
def open_mcp_server() -> Iterator[ProtectedMcpServer]:
    """A custom MCP server that needs no authorization (SPEC §11)."""
    server = ProtectedMcpServer("Open Tools", None).start()
    yield server
    server.stop()


def test_a_custom_server_without_authorization_is_connected_at_once(
    pc: Connectors, open_mcp_server: ProtectedMcpServer
) -> None:
    started = pc.authorize(
        "custom_mcp", mcp_server_url=open_mcp_server.url, display_name="Open Client"
    )

    assert started.connected is True
    assert (started.authorization_url, started.state_token, started.url) == (None, None, None)
    connection = started.connection
    assert connection is not None
    assert (connection.app_key, connection.mcp_server_url, connection.display_name) == (
        "custom_mcp",
        open_mcp_server.url,
        "Open Client",
    )
    assert [c.id for c in pc.connections() if c.app_key == "custom_mcp"] == [connection.id]
    pc.delete(connection.id)
