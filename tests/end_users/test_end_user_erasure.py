"""Erasing an end user (``DELETE /end-users/{id}``, SPEC §8) against a real OpenID provider:
its grants revoked at the provider, its connections and the end user gone; another end user of
the same service key untouched."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from personal_connectors.models import Connection, EndUser
from tests.conftest import CLIENT_ID, CLIENT_SECRET, Tenant
from tests.flows.conftest import connect
from tests.support.db import event_types, stored_tokens
from tests.support.oidc import OidcProvider, token_request
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess


def rows_left(
    service: ServiceProcess, connection_id: str, organization_id: str, end_user_id: str
) -> tuple[int, int]:
    """How many rows of the connection and of the organization's end user are still stored."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connections = await session.scalar(
            select(func.count()).select_from(Connection).where(Connection.id == connection_id)
        )
        end_users = await session.scalar(
            select(func.count())
            .select_from(EndUser)
            .where(EndUser.organization_id == organization_id, EndUser.external_id == end_user_id)
        )
        return int(connections), int(end_users)

    return service.run_db(work)


def test_erasing_an_end_user_revokes_its_grants_and_leaves_the_others(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, oidc: OidcProvider
) -> None:
    key = make_organization_key(service, tenant.organization_id)
    alice, bob = key.acting_for("alice"), key.acting_for("bob")
    alices = [connect(api, alice, login="alice"), connect(api, alice, login="alice2")]
    bobs = connect(api, bob, login="bob")
    refresh_tokens = [stored_tokens(service, connection)[1] for connection in alices]
    assert all(refresh_tokens)
    shown = api.get("/end-users/alice", params=key.org, headers=key.headers).json()
    assert shown["connection_count"] == 2

    erased = api.delete("/end-users/alice", params=key.org, headers=key.headers)
    assert erased.status_code == 204 and erased.content == b""

    # At the provider: every refresh token the service held for alice is refused.
    for refresh_token in refresh_tokens:
        assert refresh_token is not None
        refreshed = token_request(
            oidc,
            CLIENT_ID,
            CLIENT_SECRET,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # Here: the end user and its connections are gone; the audit trail says they were revoked.
    for connection in alices:
        assert rows_left(service, connection, tenant.organization_id, "alice") == (0, 0)
        assert event_types(service, connection) == [
            "connection.created",
            "connection.revoked",
            "connection.deleted",
        ]
        token = api.post(f"/{connection}/token", params=alice.org, headers=alice.headers)
        assert token.status_code == 404
    assert api.get("/end-users/alice", params=key.org, headers=key.headers).status_code == 404
    assert api.delete("/end-users/alice", params=key.org, headers=key.headers).status_code == 404

    # Bob keeps his connection and its token.
    token = api.post(f"/{bobs}/token", params=bob.org, headers=bob.headers)
    assert token.status_code == 200 and token.json()["connection_id"] == bobs
    listed = api.get("", params=key.org, headers=key.headers).json()
    assert [(item["id"], item["end_user_id"]) for item in listed] == [(bobs, "bob")]
    assert [
        item["id"] for item in api.get("/end-users", params=key.org, headers=key.headers).json()
    ] == ["bob"]
