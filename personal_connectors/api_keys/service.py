"""Issuing, listing and deleting API keys through the API (SPEC §8).

Owners and admins manage the organization's service and exchange keys; every user manages their
own user keys. A deleted key is gone: the next request presenting it is 401 ``INVALID_API_KEY``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.exceptions import ResourceNotFound
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.identity.service import IdentityService, IssuedAPIKey, OrgAccess
from personal_connectors.models import ID_MAX_LENGTH, APIKey, KeyKind


class APIKeyService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.identities = IdentityService(session)
        self.repository = IdentityRepository(session)

    async def create(
        self, access: OrgAccess, kind: KeyKind, *, name: str | None, expires_in_days: int | None
    ) -> IssuedAPIKey:
        if kind == KeyKind.USER:
            return await self.identities.create_api_key(
                access.user_id, name=name, expires_in_days=expires_in_days
            )
        access.require_admin()
        return await self.identities.create_organization_key(
            access.organization_id, kind, name=name, expires_in_days=expires_in_days
        )

    async def visible_to(self, access: OrgAccess) -> list[APIKey]:
        """The organization's keys (owners and admins) and the caller's own, newest first."""
        keys = list(await self.repository.user_keys([access.user_id]))
        if access.is_admin:
            keys += await self.repository.organization_keys(access.organization_id)
        return sorted(keys, key=lambda key: (key.created_at, key.id), reverse=True)

    async def delete(self, access: OrgAccess, key_id: str) -> None:
        """Another user's key, another organization's or an unknown one: 404 alike."""
        key = await self.repository.get_api_key(key_id) if len(key_id) <= ID_MAX_LENGTH else None
        if key is None or not self._reaches(access, key):
            raise ResourceNotFound("No such API key.")
        if key.kind != KeyKind.USER:
            access.require_admin()
        await self.repository.delete_api_key(key)
        await self.session.commit()

    @staticmethod
    def _reaches(access: OrgAccess, key: APIKey) -> bool:
        if key.kind == KeyKind.USER:
            return key.user_id == access.user_id
        return key.organization_id == access.organization_id
