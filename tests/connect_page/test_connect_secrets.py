"""Session tokens, launch tokens and binding secrets never reach a log line or a page."""

from __future__ import annotations

import httpx

from personal_connectors.logs import redact
from tests.conftest import STATELESS_KEY, Tenant
from tests.connect_page.conftest import (
    browser,
    connect_via_page,
    create_session,
    launch,
    open_page,
)
from tests.flows.conftest import start_flow
from tests.support.service import ServiceProcess


def test_connect_secrets_stay_out_of_logs_and_pages(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    offset = len(service.logs())
    created = create_session(api, tenant)
    client = browser(service)
    page = open_page(client, created["connect_url"])
    # The page knows the session only by its cookie; its HTML never carries the token.
    assert created["token"] not in page.text
    _, callback_url = connect_via_page(client)
    result = client.get(callback_url)
    assert result.status_code == 200
    launch_url = str(start_flow(api, tenant, connector_type=STATELESS_KEY)["authorization_url"])
    launched = launch(client, launch_url)
    launch(client, launch_url)  # replayed, refused
    browser(service).get(created["connect_url"].replace("cs_", "cs_x"))  # unknown, refused

    secrets = [
        created["token"],
        launch_url.split("t=", 1)[1],
        *(
            cookie.value
            for cookie in client.cookies.jar
            if cookie.name.startswith(("pc_flow_", "pc_connect")) and cookie.value
        ),
        *(
            header.split("=", 1)[1].split(";", 1)[0]
            for response in (launched,)
            for header in response.headers.get_list("set-cookie")
        ),
    ]
    assert len(secrets) >= 3
    logs = service.logs()[offset:]
    assert "/connect" in logs  # the requests were logged, without their secrets
    for secret in secrets:
        assert secret not in logs
        assert secret[6:30] not in logs
    assert redact(f"session={created['token']}") != f"session={created['token']}"
    assert created["token"] not in redact(f"GET /connect?session={created['token']} 303")
