"""Delivery against the real service: connection lifecycle events reach an organization's
endpoint signed the Standard Webhooks way, without any token, and are retried until delivered."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from personal_connectors.events.types import EventType
from personal_connectors.models import DeliveryStatus
from tests.conftest import CLIENT_SECRET, PROVIDER_KEY, Tenant
from tests.flows.conftest import connect
from tests.support.db import event_types, stored_tokens
from tests.support.service import ServiceProcess
from tests.support.webhook_receiver import Received, WebhookReceiver
from tests.webhooks.conftest import add_webhook, deliveries


def verified(secret: str, received: Received) -> dict[str, object]:
    payload = Webhook(secret).verify(received.body, received.headers)
    assert isinstance(payload, dict)
    return payload


def test_lifecycle_events_arrive_signed_and_without_tokens(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    everything = add_webhook(api, tenant, receiver.url("/all"), description="all")
    only_disabled = add_webhook(
        api, tenant, receiver.url("/disabled"), event_types=["connection.disabled"]
    )
    assert everything["secret"].startswith("whsec_") and everything["event_types"] is None

    connection_id = connect(api, tenant)
    secrets_seen = {*stored_tokens(service, connection_id), CLIENT_SECRET}
    forced = api.post(
        f"/{connection_id}/token",
        params={**tenant.org, "force_refresh": "true"},
        headers=tenant.headers,
    )
    assert forced.status_code == 200, forced.text
    secrets_seen |= {forced.json()["access_token"], *stored_tokens(service, connection_id)}
    for active in (False, True):
        toggled = api.patch(
            f"/connections/{connection_id}/active",
            params=tenant.org,
            headers=tenant.headers,
            json={"is_active": active},
        )
        assert toggled.status_code == 200, toggled.text
    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204

    recorded = event_types(service, connection_id)
    expected = Counter(t for t in recorded if t != EventType.TOKEN_ISSUED)
    assert {"connection.created", "connection.refreshed", "connection.disabled"} <= set(expected)
    assert {"connection.enabled", "connection.revoked", "connection.deleted"} <= set(expected)
    seen = receiver.wait_for(lambda got: len(got) >= expected.total(), path="/all")
    assert all(r.answered == 204 for r in seen)

    payloads = [verified(everything["secret"], r) for r in seen]
    assert Counter(p["type"] for p in payloads) == expected
    assert len({r.webhook_id for r in seen}) == len(seen)
    assert all(r.webhook_id.startswith("msg_") for r in seen)
    for r, payload in zip(seen, payloads, strict=True):
        assert abs(int(r.headers["webhook-timestamp"]) - time.time()) < 120
        assert r.headers["content-type"] == "application/json"
        data = payload["data"]
        assert isinstance(data, dict)
        assert data["connection_id"] == connection_id
        assert data["organization_id"] == tenant.organization_id
        assert data["user_id"] == tenant.user_id and data["app_key"] == PROVIDER_KEY
        body = r.body.decode()
        for secret in (*secrets_seen, everything["secret"], only_disabled["secret"]):
            assert secret and secret not in body
        # Another endpoint's secret, or a changed body, fails verification.
        with pytest.raises(WebhookVerificationError):
            Webhook(only_disabled["secret"]).verify(r.body, r.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(everything["secret"]).verify(
                r.body.replace(b"connection", b"konnection"), r.headers
            )
    by_type = {p["type"]: p["data"] for p in payloads}
    assert by_type["connection.disabled"]["is_active"] is False  # type: ignore[index]
    assert by_type["connection.deleted"]["status"] == "deleted"  # type: ignore[index]

    [disabled] = receiver.wait_for(lambda got: len(got) >= 1, path="/disabled")
    assert verified(only_disabled["secret"], disabled)["type"] == "connection.disabled"

    # The operator sees the same trail, newest first (token-issued rows are written in batches,
    # so they may land after ``recorded`` was read).
    listed = service.cli("events", "list", "--connection", connection_id, "--json")
    lifecycle = [row["type"] for row in json.loads(listed.stdout)]
    lifecycle = [t for t in lifecycle if t != EventType.TOKEN_ISSUED]
    assert lifecycle == [t for t in recorded if t != EventType.TOKEN_ISSUED][::-1]
    monkeypatch.setenv("COLUMNS", "200")  # a terminal wide enough for Rich not to cut cells
    table = service.cli("events", "list", "--connection", connection_id).stdout
    assert "connection.deleted" in table and "connection.created" in table

    def all_settled() -> bool:
        rows = deliveries(service, tenant.organization_id)
        return all(row.status == DeliveryStatus.SUCCEEDED for row in rows)

    assert poll(all_settled)
    assert len(receiver.requests()) == expected.total() + 1  # nothing was sent twice


def test_payloads_carry_the_connections_tags_and_metadata(
    api: httpx.Client, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    hook = add_webhook(api, tenant, receiver.url("/labels"))
    connection_id = connect(api, tenant)
    changed = api.patch(
        f"/{connection_id}",
        params=tenant.org,
        headers=tenant.headers,
        json={"tags": {"team": "sales"}, "metadata": {"crm": {"id": 7}}},
    )
    assert changed.status_code == 200, changed.text
    disabled = api.patch(
        f"/connections/{connection_id}/active",
        params=tenant.org,
        headers=tenant.headers,
        json={"is_active": False},
    )
    assert disabled.status_code == 200, disabled.text

    seen = receiver.wait_for(lambda got: len(got) >= 3, path="/labels")
    by_type = {p["type"]: p["data"] for p in (verified(hook["secret"], r) for r in seen)}
    # Each payload is the connection as it was at its event (deliveries may arrive in any order).
    assert set(by_type) == {"connection.created", "connection.updated", "connection.disabled"}
    created = by_type["connection.created"]
    assert isinstance(created, dict) and created["tags"] == {} and created["metadata"] == {}
    updated = by_type["connection.updated"]
    assert isinstance(updated, dict)
    assert updated["tags"] == {"team": "sales"} and updated["metadata"] == {"crm": {"id": 7}}
    assert updated["detail"] == {"changed": ["tags", "metadata"]}
    later = by_type["connection.disabled"]
    assert isinstance(later, dict) and later["tags"] == {"team": "sales"}


def poll(condition, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_failing_endpoint_gets_the_same_message_again_until_it_answers(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, receiver: WebhookReceiver
) -> None:
    hook = add_webhook(api, tenant, receiver.url())
    receiver.fail_next(2)
    connect(api, tenant)

    seen = receiver.wait_for(lambda got: any(r.answered == 204 for r in got))
    assert [r.answered for r in seen] == [500, 500, 204]
    assert len({r.webhook_id for r in seen}) == 1
    assert len({r.body for r in seen}) == 1
    assert all(verified(hook["secret"], r)["type"] == "connection.created" for r in seen)
    assert seen[1].at - seen[0].at >= 0.45 and seen[2].at - seen[1].at >= 0.45  # the schedule

    def succeeded() -> bool:
        [row] = deliveries(service, tenant.organization_id)
        return row.status == DeliveryStatus.SUCCEEDED

    assert poll(succeeded)
    [row] = deliveries(service, tenant.organization_id)
    assert (row.id, row.attempts, row.last_status_code) == (seen[0].webhook_id, 3, 204)


def test_a_delivery_is_given_up_after_the_retry_schedule(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, receiver: WebhookReceiver
) -> None:
    add_webhook(api, tenant, receiver.url())
    receiver.fail_always()
    connect(api, tenant)

    def failed() -> bool:
        rows = deliveries(service, tenant.organization_id)
        return len(rows) == 1 and rows[0].status == DeliveryStatus.FAILED

    assert poll(failed)
    [row] = deliveries(service, tenant.organization_id)
    # CONNECTORS_WEBHOOK_RETRY_SCHEDULE has three delays in the tests: four attempts.
    assert (row.attempts, row.last_status_code, row.last_error) == (4, 500, "non-2xx answer")
    assert row.finished_at is not None
    seen = receiver.requests()
    assert len(seen) == 4 and {r.webhook_id for r in seen} == {row.id}
