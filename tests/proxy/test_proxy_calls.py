"""The proxy forwards a call to the connection's API and its answer back (SPEC §9): method,
path, query less the service's parameters, headers less hop-by-hop ones and the caller's
credentials, the connection's credentials as the entry declares; the provider's status,
headers and body unchanged but for Set-Cookie, hop-by-hop and the service's own headers."""

from __future__ import annotations

import gzip
import hashlib
import json

import httpx

from tests.conftest import Tenant
from tests.proxy.conftest import connect_to, is_envelope, proxied
from tests.support import web
from tests.support.db import stored_tokens, update_connection
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream_api import PROXY_HEADER_KEY, PROXY_META_KEY, UpstreamApi


def test_a_get_reaches_the_api_with_the_connections_token(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    access_token, _ = stored_tokens(service, connection_id)

    response = proxied(
        api,
        tenant,
        connection_id,
        "echo/repos/group%2Frepo/issues",
        params={"state": "open", "labels": "a b"},
        headers={"Accept": "application/vnd.test+json", "X-Custom": "kept"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["x-connectors-proxy"] == "upstream"
    echoed = response.json()
    assert echoed["method"] == "GET"
    # The path as sent (its encoded slash kept), under the entry's api_base_url.
    assert echoed["path"] == "/api/echo/repos/group%2Frepo/issues"
    # The caller's query less organization_id, in order and encoding.
    assert echoed["query"] == "state=open&labels=a+b"
    sent = dict(echoed["headers"])
    assert sent["authorization"] == f"Bearer {access_token}"
    assert sent["accept"] == "application/vnd.test+json"
    assert sent["x-custom"] == "kept"
    assert sent["host"] == f"127.0.0.1:{upstream.port}"


def test_the_callers_credentials_and_the_services_headers_stay_here(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)

    response = api.get(
        f"/{connection_id}/proxy/echo",
        params={**tenant.org, "organizationId": tenant.organization_id},
        headers={
            "Authorization": f"Bearer {tenant.api_key}",
            "Cookie": "ours=1",
            "X-Connectors-Retries": "0",
            "X-Connectors-Anything": "1",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped",
            "Proxy-Authorization": "Basic eDp5",
        },
    )

    assert response.status_code == 200, response.text
    names = {name for name, _ in response.json()["headers"]}
    assert response.json()["query"] == ""
    assert not names & {"cookie", "x-api-key", "x-hop", "proxy-authorization"}
    assert not [name for name in names if name.startswith("x-connectors-")]
    [authorization] = [v for k, v in response.json()["headers"] if k == "authorization"]
    assert tenant.api_key not in authorization  # the connection's token, not our key


def test_the_answer_comes_back_with_the_services_headers_winning(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)

    response = proxied(api, tenant, connection_id, "echo")

    headers = response.headers
    assert headers["x-upstream"] == "yes"
    assert headers.get_list("link") == [
        "<https://api.example/next>; rel=next",
        "<https://api.example/last>; rel=last",
    ]
    # Ours win; the provider's come back renamed.
    assert headers["x-request-id"].startswith("req_")
    assert headers["x-connectors-upstream-x-request-id"] == "upstream-request-id"
    assert "x-ratelimit-remaining" not in headers
    assert headers["x-connectors-upstream-x-ratelimit-remaining"] == "41"
    assert headers["cache-control"] == "no-store"
    assert headers["x-connectors-upstream-cache-control"] == "public, max-age=60"
    assert headers["x-connectors-proxy"] == "upstream"
    assert headers["x-connectors-upstream-x-connectors-proxy"] == "spoofed"
    # Never passed back: cookies, hop-by-hop headers and those the Connection header names.
    assert "set-cookie" not in headers and not response.cookies
    assert "proxy-authenticate" not in headers and "x-hop-only" not in headers


def test_every_method_and_its_body_go_through(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    body = json.dumps({"title": "Hello", "n": 1}).encode()

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = proxied(
            api,
            tenant,
            connection_id,
            "echo/items/7",
            method,
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, (method, response.text)
        echoed = response.json()
        assert (echoed["method"], echoed["body"]) == (method, body.decode()), method
        assert dict(echoed["headers"])["content-type"] == "application/json"
        assert dict(echoed["headers"])["content-length"] == str(len(body))


def test_the_providers_own_errors_and_redirects_come_back_as_they_are(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)

    missing = proxied(api, tenant, connection_id, "status/404")
    assert missing.status_code == 404
    assert missing.json() == {"from": "upstream"}
    assert missing.headers["x-connectors-proxy"] == "upstream"

    moved = api.get(f"/{connection_id}/proxy/redirect", params=tenant.org, headers=tenant.headers)
    assert moved.status_code == 302  # not followed
    assert moved.headers["location"] == "https://elsewhere.example/landing"
    assert moved.headers["x-connectors-proxy"] == "upstream"
    assert [seen.path for seen in upstream.seen] == ["/api/status/404", "/api/redirect"]


def test_an_encoded_body_comes_back_byte_for_byte(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    url = f"{str(api.base_url).rstrip('/')}/{connection_id}/proxy/gzip"

    with web.stream(
        "GET", url, params=tenant.org, headers={**tenant.headers, "Accept-Encoding": "gzip"}
    ) as response:
        raw = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == b'{"compressed": true}'
    # A caller that asks for no encoding: the provider is asked for none either.
    proxied(api, tenant, connection_id, "echo", headers={"Accept-Encoding": "identity"})
    assert upstream.seen[-1].header("accept-encoding") == "identity"


def test_api_auth_puts_the_token_where_the_entry_says(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """An entry's api_auth: the token in its own header and query parameter, no bearer; a
    caller's parameter of that name does not reach the provider."""
    connection_id = connect_to(api, tenant, PROXY_HEADER_KEY)
    access_token, _ = stored_tokens(service, connection_id)
    assert access_token is not None

    response = proxied(
        api, tenant, connection_id, "echo", params={"access_key": "mine", "page": "2"}
    )

    assert response.status_code == 200, response.text
    sent = dict(response.json()["headers"])
    assert sent["x-upstream-token"] == f"Token {access_token}"
    assert "authorization" not in sent
    query = response.json()["query"]
    assert query == f"page=2&access_key={access_token}"


# Percent-encoded bytes of every kind: UTF-8 in both cases, a byte that is no UTF-8 (`%E9`), an
# encoded slash, percent sign and space, and an encoded character that need not be (`%7E`).
ENCODED_PATHS = [
    "echo/caf%C3%A9/na%c3%afve",
    "echo/%E9t%E9",
    "echo/a%2Fb/%25C3%25A9/x%20y/%7E",
]


def test_a_percent_encoded_path_reaches_the_api_byte_for_byte(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    """Neither decoded nor encoded again: the provider sees each byte the caller sent."""
    connection_id = connect_to(api, tenant)
    for path in ENCODED_PATHS:
        response = proxied(api, tenant, connection_id, path)
        assert response.status_code == 200, response.text
        assert response.json()["path"] == f"/api/{path}"
        assert upstream.seen[-1].path == f"/api/{path}"


def test_an_empty_path_calls_the_base_url(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    response = proxied(api, tenant, connection_id, "")
    assert response.status_code == 404 and response.headers["x-connectors-proxy"] == "upstream"
    assert upstream.seen[-1].path == "/api/"


def test_refusals_of_the_service_keep_the_envelope(
    api: httpx.Client,
    tenant: Tenant,
    other_tenant: Tenant,
    service: ServiceProcess,
    upstream: UpstreamApi,
) -> None:
    connection_id = connect_to(api, tenant)

    assert is_envelope(
        api.get(f"/{connection_id}/proxy/echo", params=tenant.org),
        401,
        "AUTHENTICATION_REQUIRED",
    )
    foreign = proxied(api, other_tenant, connection_id, "echo")
    assert is_envelope(foreign, 404, "RESOURCE_NOT_FOUND")
    unknown = proxied(api, tenant, "conn_" + "0" * 32, "echo")
    assert is_envelope(unknown, 404, "RESOURCE_NOT_FOUND")
    too_long = proxied(api, tenant, "conn_" + "0" * 300, "echo")
    assert is_envelope(too_long, 400, "VALIDATION_ERROR")
    assert too_long.json()["error"]["details"]["fields"] == ["connection_id"]
    for bad in ("6", "-1", "x", "1.5"):
        response = proxied(
            api, tenant, connection_id, "echo", headers={"X-Connectors-Retries": bad}
        )
        assert is_envelope(response, 400, "VALIDATION_ERROR"), bad
    disabled = api.patch(
        f"/connections/{connection_id}/active",
        params=tenant.org,
        headers=tenant.headers,
        json={"is_active": False},
    )
    assert disabled.status_code == 200, disabled.text
    assert is_envelope(proxied(api, tenant, connection_id, "echo"), 409, "CONNECTION_DISABLED")
    rejected = connect_to(api, tenant)
    update_connection(service, rejected, status="needs_reauth")
    response = proxied(api, tenant, rejected, "echo")
    assert is_envelope(response, 409, "REAUTHORIZATION_REQUIRED")
    assert upstream.seen == []  # none of them reached the provider


def test_a_provider_that_cannot_be_reached_is_503(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant, PROXY_META_KEY)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    update_connection(service, connection_id, provider_metadata={"instance_url": closed})

    response = proxied(api, tenant, connection_id, "echo")

    assert is_envelope(response, 503, "PROVIDER_UNAVAILABLE")
    assert response.headers["retry-after"] == "5"


def test_the_body_hash_survives_a_binary_upload(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    body = bytes(range(256)) * 64
    response = proxied(api, tenant, connection_id, "echo", "POST", content=body)
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_a_small_answer_the_provider_breaks_off_is_503(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    """An answer declaring a small length is read whole before it is sent: one broken off
    comes back as the service's 503, not as a cut connection."""
    connection_id = connect_to(api, tenant)
    response = proxied(api, tenant, connection_id, "short")
    assert is_envelope(response, 503, "PROVIDER_UNAVAILABLE")
    assert response.headers["retry-after"] == "5"
    assert [seen.path for seen in upstream.seen] == ["/api/short"]
