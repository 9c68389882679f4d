"""Database access for identities."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import APIKey, Membership, Organization, User


class IdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_organization(self, organization_id: str) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    async def get_user(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def get_user_by_email(self, email: str) -> User | None:
        return (
            await self.session.execute(select(User).where(User.email == email))
        ).scalar_one_or_none()

    async def get_membership(self, organization_id: str, user_id: str) -> Membership | None:
        statement = select(Membership).where(
            Membership.organization_id == organization_id, Membership.user_id == user_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_api_key_by_hash(self, key_hash: str) -> APIKey | None:
        statement = select(APIKey).where(APIKey.key_hash == key_hash)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_api_key(self, key_id: str) -> APIKey | None:
        return await self.session.get(APIKey, key_id)

    async def members_among(self, organization_id: str, user_ids: set[str]) -> set[str]:
        """Which of ``user_ids`` are members of the organization."""
        statement = select(Membership.user_id).where(
            Membership.organization_id == organization_id,
            Membership.user_id.in_(sorted(user_ids)),
        )
        return set((await self.session.execute(statement)).scalars())

    def add(self, *rows: Organization | User | Membership | APIKey) -> None:
        self.session.add_all(rows)
