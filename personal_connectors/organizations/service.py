"""Reading and changing an organization's settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.exceptions import ResourceNotFound
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.identity.service import OrgAccess
from personal_connectors.models import Organization
from personal_connectors.organizations.schemas import OrganizationPatch


class OrganizationService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = IdentityRepository(session)

    async def get(self, access: OrgAccess) -> Organization:
        organization = await self.repository.get_organization(access.organization_id)
        if organization is None:  # deleted between the access check and now
            raise ResourceNotFound("The organization no longer exists.")
        return organization

    async def update(self, access: OrgAccess, patch: OrganizationPatch) -> Organization:
        organization = await self.get(access)
        if patch.require_launched_flows is not None:
            organization.require_launched_flows = patch.require_launched_flows
        await self.session.commit()
        await self.session.refresh(organization)
        return organization
