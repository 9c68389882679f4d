"""HTTP routes of the organization's settings (owners and admins)."""

from __future__ import annotations

from fastapi import APIRouter

from personal_connectors.http.dependencies import AdminAccessDep, SessionDep
from personal_connectors.models import Organization
from personal_connectors.organizations.schemas import OrganizationOut, OrganizationPatch
from personal_connectors.organizations.service import OrganizationService

router = APIRouter(tags=["Organization"])


def _out(organization: Organization) -> OrganizationOut:
    return OrganizationOut(
        id=organization.id,
        name=organization.name,
        require_launched_flows=organization.require_launched_flows,
        created_at=organization.created_at,
        updated_at=organization.updated_at,
    )


@router.get("/organization", response_model=OrganizationOut, summary="The organization's settings")
async def get_organization(access: AdminAccessDep, session: SessionDep) -> OrganizationOut:
    return _out(await OrganizationService(session).get(access))


@router.patch(
    "/organization", response_model=OrganizationOut, summary="Change the organization's settings"
)
async def patch_organization(
    body: OrganizationPatch, access: AdminAccessDep, session: SessionDep
) -> OrganizationOut:
    return _out(await OrganizationService(session).update(access, body))
