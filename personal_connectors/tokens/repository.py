"""Database access for the token hot path: the caller, their membership and the connection in
one round trip.

Every tool call of the platform asks for a token first, so this read is the service's busiest
query. Authenticating the key, checking the membership and finding the connection separately
costs three round trips (and, on SQLite, a dozen hand-offs to the driver's thread); outer joins
from the key row answer all three at once, and a missing membership or connection comes back as
NULLs, so every refusal stays as precise as the separate checks made it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import APIKey, Connection, Membership


@dataclass(frozen=True)
class TokenLookup:
    """What one query found for a key hash, an organization and a connection id."""

    key: APIKey
    role: str | None  # the key's user's role in the organization; None: not a member
    connection: Connection | None  # the user's live connection there; None: not theirs/unknown


class TokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lookup(
        self, key_hash: str, organization_id: str, connection_id: str
    ) -> TokenLookup | None:
        """None when no key has that hash. The connection must belong to the key's user, in the
        organization, and not be deleted: the same rule as ``ConnectionRepository.get_owned``."""
        statement = (
            select(APIKey, Membership.role, Connection)
            .outerjoin(
                Membership,
                and_(
                    Membership.user_id == APIKey.user_id,
                    Membership.organization_id == organization_id,
                ),
            )
            .outerjoin(
                Connection,
                and_(
                    Connection.id == connection_id,
                    Connection.user_id == APIKey.user_id,
                    Connection.organization_id == organization_id,
                    Connection.deleted_at.is_(None),
                ),
            )
            .where(APIKey.key_hash == key_hash)
        )
        row = (await self.session.execute(statement)).one_or_none()
        if row is None:
            return None
        key, role, connection = row
        return TokenLookup(key, role, connection)
