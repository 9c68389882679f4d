"""Webhook payloads name the end user who owns the connection (SPEC §8), on both ways events
are written: one at a time (``connection.created``) and in bulk (``connection.refreshed``)."""

from __future__ import annotations

import httpx
from standardwebhooks.webhooks import Webhook

from tests.conftest import Tenant
from tests.flows.conftest import connect
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess
from tests.support.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import add_webhook


def test_payloads_carry_the_end_user_id(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    hook = add_webhook(
        api,
        tenant,
        receiver.url("/end-users"),
        event_types=["connection.created", "connection.refreshed"],
    )
    caller = make_organization_key(service, tenant.organization_id).acting_for("gina")
    theirs = connect(api, caller, login="gina")
    refreshed = api.post(
        f"/{theirs}/token", params={**caller.org, "force_refresh": "true"}, headers=caller.headers
    )
    assert refreshed.status_code == 200, refreshed.text
    mine = connect(api, tenant, login="hank")

    seen = receiver.wait_for(lambda got: len(got) >= 3, path="/end-users")
    payloads = [Webhook(hook["secret"]).verify(r.body, r.headers) for r in seen]
    found = {(p["type"], p["data"]["connection_id"]): p["data"]["end_user_id"] for p in payloads}
    assert found == {
        ("connection.created", theirs): "gina",
        ("connection.refreshed", theirs): "gina",
        ("connection.created", mine): None,
    }
