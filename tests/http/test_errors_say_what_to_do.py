"""Refusals a newcomer meets first tell them what to send instead, in the envelope, naming
nothing secret: the key's header, the connector's key, the app to configure, the body's
Content-Type. And no API answer may be kept by a cache."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PROVIDER_KEY, Tenant
from tests.flows.conftest import connect
from tests.http.test_envelope import assert_envelope
from tests.support import web


@pytest.mark.parametrize("path", ["", "/conn_" + "0" * 32 + "/token"])
def test_a_key_without_bearer_is_told_how_to_send_it(
    api: httpx.Client, tenant: Tenant, path: str
) -> None:
    method = "POST" if path else "GET"
    for authorization in (tenant.api_key, f"Basic {tenant.api_key}", "Bearer"):
        response = api.request(
            method, path, params=tenant.org, headers={"Authorization": authorization}
        )
        error = assert_envelope(response, 401, "AUTHENTICATION_REQUIRED")
        hint = str(error["system_message"])
        assert "Bearer" in hint and "X-API-Key" in hint, hint
        assert tenant.api_key not in response.text
    sent_right = api.request(
        method, path, params=tenant.org, headers={"Authorization": f"Bearer {tenant.api_key}"}
    )
    assert sent_right.status_code != 401


@pytest.mark.parametrize("path", ["", "/conn_unknown/token"], ids=["list", "token"])
def test_a_malformed_or_different_authorization_beside_a_good_x_api_key_is_refused(
    api: httpx.Client, tenant: Tenant, path: str
) -> None:
    method = "POST" if path else "GET"
    for authorization, words in (
        (f"Basic {tenant.api_key}", "Bearer"),
        ("Bearer ak_someone_elses_key", "different keys"),
    ):
        response = api.request(
            method,
            path,
            params=tenant.org,
            headers={"X-API-Key": tenant.api_key, "Authorization": authorization},
        )
        error = assert_envelope(response, 401, "AUTHENTICATION_REQUIRED")
        assert words in str(error["system_message"])
        assert tenant.api_key not in response.text
    both_same = api.request(
        method,
        path,
        params=tenant.org,
        headers={"X-API-Key": tenant.api_key, "Authorization": f"Bearer {tenant.api_key}"},
    )
    assert both_same.status_code != 401


def test_a_flag_is_a_json_boolean_never_a_number(api: httpx.Client, tenant: Tenant) -> None:
    for value in (0.0, 1, "true"):
        response = api.patch(
            "/organization",
            params=tenant.org,
            headers=tenant.headers,
            json={"require_launched_flows": value},
        )
        assert_envelope(response, 400, "VALIDATION_ERROR")
    current = api.get("/organization", params=tenant.org, headers=tenant.headers)
    assert current.json()["require_launched_flows"] is False


def test_an_unknown_connector_type_suggests_the_closest_and_the_list(
    api: httpx.Client, tenant: Tenant
) -> None:
    started = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"connector_type": "githb"}
    )
    error = assert_envelope(started, 400, "VALIDATION_ERROR")
    assert "Did you mean 'github'?" in str(error["system_message"])
    assert "GET /v1/personal-connectors/available" in str(error["system_message"])
    assert error["details"] == {"fields": ["connector_type"]}

    app = api.put(
        "/apps/gitlabb",
        params=tenant.org,
        headers=tenant.headers,
        json={"client_id": "id", "client_secret": "secret-value"},
    )
    error = assert_envelope(app, 400, "VALIDATION_ERROR")
    assert "Did you mean 'gitlab'?" in str(error["system_message"])

    session = api.post(
        "/connect-sessions",
        params=tenant.org,
        headers=tenant.headers,
        json={"allowed_connectors": ["github", "notoin"]},
    )
    error = assert_envelope(session, 400, "VALIDATION_ERROR")
    assert "Did you mean 'notion'?" in str(error["system_message"])
    assert error["details"] == {"fields": ["allowed_connectors"]}

    one = api.get("/available/slak", params=tenant.org, headers=tenant.headers)
    error = assert_envelope(one, 404, "RESOURCE_NOT_FOUND")
    assert "Did you mean 'slack'?" in str(error["system_message"])

    nothing_close = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"connector_type": "zzzz"}
    )
    message = str(assert_envelope(nothing_close, 400, "VALIDATION_ERROR")["system_message"])
    assert "Did you mean" not in message
    assert "GET /v1/personal-connectors/available" in message


def test_connector_not_configured_says_how_to_configure_it(
    api: httpx.Client, tenant: Tenant
) -> None:
    response = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"connector_type": "github"}
    )
    message = str(assert_envelope(response, 400, "CONNECTOR_NOT_CONFIGURED")["system_message"])
    assert "PUT /v1/personal-connectors/apps/github" in message
    assert "connectors apps set github" in message


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"Content-Type": "text/plain"}, "`text/plain`"),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            "`application/x-www-form-urlencoded`",
        ),
        ({}, "no Content-Type"),
    ],
)
def test_a_json_body_sent_with_another_content_type_is_told_so(
    api: httpx.Client, tenant: Tenant, headers: dict[str, str], said: str
) -> None:
    response = api.post(
        "/authorize",
        params=tenant.org,
        headers={**tenant.headers, **headers},
        content=b'{"connector_type": "local-oidc"}',
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Content-Type: application/json" in str(error["system_message"])
    assert said in str(error["system_message"])
    assert error["details"] == {"fields": ["body"]}


def test_answers_that_carry_secrets_are_never_stored(
    api: httpx.Client, service, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    connection_id = connect(api, tenant)
    answers = {
        "token": api.post(f"/{connection_id}/token", params=tenant.org, headers=tenant.headers),
        "webhook secret": api.post(
            "/webhooks",
            params=tenant.org,
            headers=tenant.headers,
            json={"url": "https://hooks.example.test/in"},
        ),
        "connect link": api.post(
            "/connect-sessions", params=tenant.org, headers=tenant.headers, json={}
        ),
        "flow state": api.post(
            "/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": PROVIDER_KEY},
        ),
        "list": api.get("", params=tenant.org, headers=tenant.headers),
        "error": api.get("", params=tenant.org),
    }
    for name, response in answers.items():
        assert response.status_code < 500, (name, response.text)
        assert response.headers.get("cache-control") == "no-store", name
    # Outside the API, what a cache may keep stays cacheable.
    assert "no-store" not in web.get(f"{service.base_url}/livez").headers.get("cache-control", "")
