"""The webhook endpoints API: admin-only, validated before anything is written, the secret
shown once and sealed at rest, and nothing visible or removable from another organization."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from personal_connectors.models import Role, WebhookEndpoint
from personal_connectors.webhooks.service import secret_aad
from tests.conftest import Tenant, make_tenant
from tests.flows.conftest import connect
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess
from tests.support.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import add_webhook, deliveries, list_webhooks

GOOD_URL = "https://hooks.example.test/connectors"

BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://hooks.example.test/x"}, "url"),
    ({"url": "http://hooks.example.test/x"}, "url"),  # plain http beyond loopback
    ({"url": "http://127.0.0.1.evil.test/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": ""}, "url"),
    ({"url": "https://user:pw@hooks.example.test/x"}, "url"),
    ({"url": "https://hooks.example.test/x#part"}, "url"),
    ({"url": "https://hooks.example.test:99999/x"}, "url"),
    ({"url": "https://" + "a" * 2000 + ".test/"}, "url"),
    ({"url": 5}, "url"),
    # Internal addresses (SSRF): the cloud metadata service and private ranges.
    ({"url": "https://169.254.169.254/latest/meta-data"}, "url"),
    ({"url": "https://10.0.0.5/hook"}, "url"),
    ({"url": "https://[fd00::1]/hook"}, "url"),
    ({"url": "https://2130706433/hook"}, "url"),  # 127.0.0.1 written as one number
    ({"url": "https://10.1/hook"}, "url"),  # inet_aton shorthand for 10.0.0.1
    ({"url": "https://0x7f.1/hook"}, "url"),
    ({}, "url"),
    ({"url": GOOD_URL, "event_types": ["connection.nope"]}, "event_types"),
    ({"url": GOOD_URL, "event_types": []}, "event_types"),
    ({"url": GOOD_URL, "event_types": "connection.created"}, "event_types"),
    ({"url": GOOD_URL, "description": "x" * 501}, "description"),
    ({"url": GOOD_URL, "secret": "whsec_mine"}, "secret"),  # unknown fields are refused
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_invalid_endpoints_are_refused_and_nothing_is_written(
    api: httpx.Client, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = api.post("/webhooks", params=tenant.org, headers=tenant.headers, json=body)
    assert is_envelope(response.json(), 400), response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and field in error["details"]["fields"]
    assert list_webhooks(api, tenant).json() == {"object": "list", "data": []}


def test_the_secret_is_shown_once_and_sealed_at_rest(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = add_webhook(
        api, tenant, GOOD_URL, event_types=["connection.deleted", "connection.created"]
    )
    assert created["event_types"] == ["connection.created", "connection.deleted"]
    loopback = add_webhook(api, tenant, "http://localhost:9/hook")  # allowed in the tests
    listed = list_webhooks(api, tenant)
    assert listed.status_code == 200
    rows = listed.json()["data"]
    assert [row["id"] for row in rows] == [created["id"], loopback["id"]]
    assert all("secret" not in row for row in rows)
    assert created["secret"] not in listed.text and loopback["secret"] not in listed.text
    assert {k: v for k, v in created.items() if k != "secret"} == rows[0]

    async def stored(session, runtime):  # type: ignore[no-untyped-def]
        row = await session.get(WebhookEndpoint, created["id"])
        return row.secret_ct, runtime.sealer.open(row.key_id, row.secret_ct, secret_aad(row.id))

    ciphertext, opened = service.run_db(stored)
    assert opened == created["secret"] and created["secret"].encode() not in ciphertext


def test_members_and_other_organizations_cannot_see_or_change_endpoints(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    hook = add_webhook(api, tenant, GOOD_URL)
    member = make_tenant(service, Role.MEMBER)
    for response in (
        api.post("/webhooks", params=member.org, headers=member.headers, json={"url": GOOD_URL}),
        list_webhooks(api, member),
    ):
        assert is_envelope(response.json(), 403)
        assert response.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"

    foreign = api.get("/webhooks", params=tenant.org, headers=other_tenant.headers)
    assert is_envelope(foreign.json(), 403)
    assert foreign.json()["error"]["code"] == "ORGANIZATION_ACCESS_DENIED"
    assert list_webhooks(api, other_tenant).json()["data"] == []
    for response in (
        api.delete(
            f"/webhooks/{hook['id']}", params=other_tenant.org, headers=other_tenant.headers
        ),
        api.post(
            f"/webhooks/{hook['id']}/rotate-secret",
            params=other_tenant.org,
            headers=other_tenant.headers,
        ),
    ):
        assert is_envelope(response.json(), 404)
    assert [row["id"] for row in list_webhooks(api, tenant).json()["data"]] == [hook["id"]]


def test_a_rotated_secret_signs_from_then_on_and_a_removed_endpoint_gets_nothing(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, receiver: WebhookReceiver
) -> None:
    hook = add_webhook(api, tenant, receiver.url())
    connection_id = connect(api, tenant)
    [first] = receiver.wait_for(lambda got: len(got) == 1)
    Webhook(hook["secret"]).verify(first.body, first.headers)

    rotated = api.post(
        f"/webhooks/{hook['id']}/rotate-secret", params=tenant.org, headers=tenant.headers
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != hook["secret"]
    toggle = {"is_active": False}
    path = f"/connections/{connection_id}/active"
    assert (
        api.patch(path, params=tenant.org, headers=tenant.headers, json=toggle).status_code == 200
    )
    second = receiver.wait_for(lambda got: len(got) == 2)[1]
    assert Webhook(new_secret).verify(second.body, second.headers)["type"] == "connection.disabled"
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(second.body, second.headers)

    removed = api.delete(f"/webhooks/{hook['id']}", params=tenant.org, headers=tenant.headers)
    assert removed.status_code == 204
    again = api.delete(f"/webhooks/{hook['id']}", params=tenant.org, headers=tenant.headers)
    assert is_envelope(again.json(), 404)
    toggle = {"is_active": True}
    assert (
        api.patch(path, params=tenant.org, headers=tenant.headers, json=toggle).status_code == 200
    )
    # The endpoint's outbox went with it, and the new event owes it nothing.
    assert deliveries(service, tenant.organization_id) == []
    assert list_webhooks(api, tenant).json()["data"] == []
