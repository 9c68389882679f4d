"""Database access for identities."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import (
    APIKey,
    EndUser,
    KeyKind,
    Membership,
    Organization,
    Role,
    User,
)


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

    async def organization_keys(self, organization_id: str) -> Sequence[APIKey]:
        """The organization's service and exchange keys, newest first."""
        statement = (
            select(APIKey)
            .where(APIKey.organization_id == organization_id, APIKey.kind != KeyKind.USER)
            .order_by(APIKey.created_at.desc(), APIKey.id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def user_keys(self, user_ids: Sequence[str]) -> Sequence[APIKey]:
        """The user keys of ``user_ids``, newest first."""
        statement = (
            select(APIKey)
            .where(APIKey.kind == KeyKind.USER, APIKey.user_id.in_(list(user_ids)))
            .order_by(APIKey.created_at.desc(), APIKey.id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def delete_api_key(self, key: APIKey) -> None:
        await self.session.delete(key)

    async def organizations(self) -> Sequence[Organization]:
        statement = select(Organization).order_by(Organization.created_at, Organization.id)
        return (await self.session.execute(statement)).scalars().all()

    async def members(self, organization_id: str) -> Sequence[tuple[User, str]]:
        """The organization's users and their roles (not end users' internal users), oldest
        membership first."""
        statement = (
            select(User, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == organization_id, Membership.role != Role.END_USER)
            .order_by(Membership.created_at, User.id)
        )
        return [(user, role) for user, role in await self.session.execute(statement)]

    async def members_among(self, organization_id: str, user_ids: set[str]) -> set[str]:
        """Which of ``user_ids`` are members of the organization."""
        statement = select(Membership.user_id).where(
            Membership.organization_id == organization_id,
            Membership.user_id.in_(sorted(user_ids)),
        )
        return set((await self.session.execute(statement)).scalars())

    async def get_end_user(self, organization_id: str, external_id: str) -> EndUser | None:
        statement = select(EndUser).where(
            EndUser.organization_id == organization_id, EndUser.external_id == external_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def user_labels(self, user_id: str) -> tuple[str, str | None]:
        """How pages name a user: (email, name); for an end user's internal user, the end user's
        email (else the platform's id for it) and display name."""
        statement = (
            select(User.email, User.name, EndUser.email, EndUser.display_name, EndUser.external_id)
            .outerjoin(EndUser, EndUser.user_id == User.id)
            .where(User.id == user_id)
        )
        row = (await self.session.execute(statement)).first()
        if row is None:
            return "", None
        email, name, end_user_email, display_name, external_id = row
        if external_id is not None:
            return end_user_email or external_id, display_name
        return email or "", name

    def add(self, *rows: Organization | User | Membership | APIKey | EndUser) -> None:
        self.session.add_all(rows)
