"""White-box helpers: read and change what the service stored, through its own code and keys."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from personal_connectors.events.types import EventType
from personal_connectors.models import Base, Connection, ConnectionEvent, utcnow
from personal_connectors.tokens.vault import TokenVault
from tests.support.service import ServiceProcess


def stored_tokens(service: ServiceProcess, connection_id: str) -> tuple[str | None, str | None]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        vault = TokenVault(runtime.sealer)
        return vault.access_token(connection), vault.refresh_token(connection)

    return service.run_db(work)


def set_expiry(service: ServiceProcess, connection_id: str, seconds_from_now: float) -> None:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        connection.expires_at = utcnow() + timedelta(seconds=seconds_from_now)
        await session.commit()

    service.run_db(work)


def update_row(service: ServiceProcess, model: type[Base], row_id: str, **values: object) -> None:
    """Set columns of one stored row directly, to put it in a state a test needs."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        row = await session.get(model, row_id)
        for name, value in values.items():
            setattr(row, name, value)
        await session.commit()

    service.run_db(work)


def update_connection(service: ServiceProcess, connection_id: str, **values: object) -> None:
    update_row(service, Connection, connection_id, **values)


def expire_token(service: ServiceProcess, connection_id: str, **values: object) -> None:
    """Make the connection's token an hour old and expired a moment ago (and set ``values``):
    the next hand-out refreshes, or mints again."""
    now = utcnow()
    update_connection(
        service,
        connection_id,
        token_issued_at=now - timedelta(hours=1),
        expires_at=now - timedelta(seconds=5),
        **values,
    )


def event_types(
    service: ServiceProcess, connection_id: str, *, with_token_issued: bool = False
) -> list[str]:
    """The connection's audit event types, oldest first.

    ``connection.token_issued`` rows (one per token handed out, written by a batched writer a
    moment later) are left out unless asked for, so that assertions about the lifecycle do not
    depend on when that writer last ran.
    """

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = (
            select(ConnectionEvent.type)
            .where(ConnectionEvent.connection_id == connection_id)
            .order_by(ConnectionEvent.created_at)
        )
        if not with_token_issued:
            statement = statement.where(ConnectionEvent.type != EventType.TOKEN_ISSUED)
        return list((await session.execute(statement)).scalars())

    return service.run_db(work)


def connection_row(service: ServiceProcess, connection_id: str) -> Connection:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return await session.get(Connection, connection_id)

    return service.run_db(work)
