"""API keys: shown once, stored as hashes, and refused when paused, deactivated or expired."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from personal_connectors.crypto.hashing import digest
from personal_connectors.models import APIKey, APIKeyStatus, utcnow
from tests.conftest import Tenant
from tests.support.db import update_row
from tests.support.service import ServiceProcess


def test_the_key_is_stored_only_as_its_hash(service: ServiceProcess, tenant: Tenant) -> None:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return await session.get(APIKey, tenant.api_key_id)

    key = service.run_db(work)
    assert key.key_hash == digest(tenant.api_key)
    assert tenant.api_key not in repr(key.__dict__)
    assert (
        len(tenant.api_key) == 43
        and tenant.api_key.startswith("ak_")
        and tenant.api_key[3:].isalnum()
    )


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"status": APIKeyStatus.PAUSED}, "API_KEY_PAUSED"),
        ({"status": APIKeyStatus.DEACTIVATED}, "API_KEY_DEACTIVATED"),
        ({"expires_at": utcnow() - timedelta(minutes=1)}, "API_KEY_EXPIRED"),
    ],
)
def test_unusable_keys_are_refused(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, values: dict[str, object], code: str
) -> None:
    assert api.get("", params=tenant.org, headers=tenant.headers).status_code == 200
    update_row(service, APIKey, tenant.api_key_id, **values)
    response = api.get("", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == "authentication_error"
