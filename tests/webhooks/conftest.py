"""Fixtures and helpers for the webhook tests: a loopback receiver and API shortcuts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from personal_connectors.models import WebhookDelivery
from tests.conftest import Tenant
from tests.support.service import ServiceProcess
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


def add_webhook(api: httpx.Client, tenant: Tenant, url: str, **body: Any) -> dict[str, Any]:
    response = api.post(
        "/webhooks", params=tenant.org, headers=tenant.headers, json={"url": url, **body}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def list_webhooks(api: httpx.Client, tenant: Tenant) -> httpx.Response:
    return api.get("/webhooks", params=tenant.org, headers=tenant.headers)


def deliveries(service: ServiceProcess, organization_id: str) -> list[WebhookDelivery]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.organization_id == organization_id)
            .order_by(WebhookDelivery.created_at)
        )
        return list(rows.scalars())

    return service.run_db(work)
