"""FastAPI dependencies: the runtime, a database session, the caller and their organization."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.exceptions import AuthenticationRequired, ValidationFailed
from personal_connectors.identity.service import IdentityService, OrgAccess, Principal
from personal_connectors.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def presented_api_key(request: Request) -> str | None:
    """``X-API-Key: ak_…`` or ``Authorization: Bearer ak_…`` (SPEC §2); None when neither
    header is sent. An ``Authorization`` header in another form (the key alone, another
    scheme) is refused with what to send instead, rather than read as no key at all, and so is
    a request whose two headers name different keys."""
    key = (request.headers.get("x-api-key") or "").strip() or None
    authorization = request.headers.get("authorization")
    if authorization is None:
        return key
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationRequired(
            "The Authorization header must read `Bearer ak_…`; "
            "or send the key alone in the `X-API-Key` header."
        )
    if key is not None and key != value.strip():
        raise AuthenticationRequired(
            "The X-API-Key and Authorization headers name different keys; send the key once."
        )
    return value.strip()


async def current_principal(request: Request, session: SessionDep) -> Principal:
    return await IdentityService(session).authenticate(presented_api_key(request))


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def requested_organization(
    organization_id: Annotated[
        str | None, Query(description="The organization (`org_…`); `organizationId` also accepted.")
    ] = None,
    organization_id_camel: Annotated[
        str | None, Query(alias="organizationId", include_in_schema=False)
    ] = None,
) -> str | None:
    """The organization a request names, unchecked (``optional_org_access`` checks it)."""
    return organization_id or organization_id_camel


RequestedOrganizationDep = Annotated[str | None, Depends(requested_organization)]


async def optional_org_access(
    principal: PrincipalDep,
    session: SessionDep,
    chosen: RequestedOrganizationDep,
) -> OrgAccess | None:
    if chosen is None:
        return None
    return await IdentityService(session).organization_access(principal, chosen)


def missing_organization() -> ValidationFailed:
    return ValidationFailed.for_fields("organization_id is required.", "organization_id")


async def org_access(
    access: Annotated[OrgAccess | None, Depends(optional_org_access)],
) -> OrgAccess:
    if access is None:
        raise missing_organization()
    return access


OrgAccessDep = Annotated[OrgAccess, Depends(org_access)]


async def admin_access(access: OrgAccessDep) -> OrgAccess:
    """An organization admin's or owner's access (403 for members), for the routes that change
    or reveal the organization's settings (OAuth apps, webhook endpoints)."""
    access.require_admin()
    return access


AdminAccessDep = Annotated[OrgAccess, Depends(admin_access)]
OptionalOrgAccessDep = Annotated[OrgAccess | None, Depends(optional_org_access)]
