"""FastAPI dependencies: the runtime, a database session, the caller and their organization."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.exceptions import (
    AuthenticationRequired,
    InsufficientPermissions,
    OrganizationAccessDenied,
    ValidationFailed,
)
from personal_connectors.http.context import add_response_headers
from personal_connectors.identity.pct import is_exchanged_token
from personal_connectors.identity.service import (
    END_USER_NEEDS_SERVICE_KEY,
    FOREIGN_SERVICE_KEY,
    SERVICE_KEY_NOT_ADMIN,
    IdentityService,
    OrgAccess,
    Principal,
    access_of,
    valid_end_user_id,
)
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
    """The caller, authenticated, and counted against its rate limits: every route with an API
    key comes here but the token, proxy and MCP gateway routes, which authorize by
    ``tokens.endpoints.authorized`` (the same checks and ``rate_limited``)."""
    presented = presented_api_key(request)
    runtime = await get_runtime(request)
    if is_exchanged_token(presented):
        if request.method not in READ_METHODS:
            raise InsufficientPermissions(
                "A pct_ token reads its end user's connections and hands out their tokens; "
                "changing anything needs the service key."
            )
        principal = await exchanged_principal(runtime, session, presented)
    else:
        principal = await IdentityService(session).authenticate(presented)
    runtime.key_use.record(principal.api_key_id)
    if runtime.rate_limits is not None:
        # The end user a request is for: its query's, or the path's (``/end-users/{id}``).
        end_user_id = request.query_params.get("end_user_id") or request.path_params.get(
            "end_user_id"
        )
        await rate_limited(request, runtime, principal, end_user_id)
    return principal


async def rate_limited(
    request: Request, runtime: Runtime, principal: Principal, end_user_id: str | None
) -> None:
    """Count the request against its caller's rate limits (SPEC §12, ``rate_limits``; call it
    only when ``runtime.rate_limits`` is set): a user key's own, or a service key's for the end
    user it names (``end_user_id``, or a ``pct_`` token's) and for all of them together. Its
    answer, whatever it is, carries the ``x-ratelimit-*`` headers; a full bucket is 429."""
    assert runtime.rate_limits is not None
    end_user = None
    if principal.is_service:
        end_user = principal.bound_end_user_id or end_user_id
        if end_user is not None and not valid_end_user_id(end_user):
            end_user = None  # refused later (400); counted with the requests naming none
    headers, refused = await runtime.rate_limits.check(
        principal.api_key_id, principal.is_service, end_user
    )
    add_response_headers(request.scope, headers)
    if refused is not None:
        raise refused


READ_METHODS = frozenset({"GET", "HEAD"})


async def exchanged_principal(
    runtime: Runtime, session: AsyncSession, presented: str | None
) -> Principal:
    """The end user a ``pct_`` token (identity.pct) acts for, as a service key would."""
    assert presented is not None
    return await IdentityService(session).authenticate_exchanged(runtime.sealer, presented)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


# The query parameters that name the caller's organization and end user (never a provider's).
CALLER_QUERY = frozenset({"organization_id", "organizationId", "end_user_id"})


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


async def requested_end_user(
    end_user_id: Annotated[
        str | None,
        Query(
            description="With a service key: the platform's id of the end user it acts for "
            "(SPEC §8). A user key must leave it out."
        ),
    ] = None,
) -> str | None:
    return end_user_id


RequestedEndUserDep = Annotated[str | None, Depends(requested_end_user)]


async def optional_org_access(
    principal: PrincipalDep,
    session: SessionDep,
    chosen: RequestedOrganizationDep,
    end_user_id: RequestedEndUserDep,
) -> OrgAccess | None:
    """The caller in the organization it names; None when it names none (where that is
    allowed). A service key's own organization is implied: it belongs to exactly one."""
    chosen = implied_organization(principal, chosen)
    if chosen is None:
        if end_user_id is not None:
            raise InsufficientPermissions(END_USER_NEEDS_SERVICE_KEY)
        return None
    return await IdentityService(session).organization_access(principal, chosen, end_user_id)


def missing_organization() -> ValidationFailed:
    return ValidationFailed.for_fields("organization_id is required.", "organization_id")


def implied_organization(principal: Principal, chosen: str | None) -> str | None:
    """The organization a request names, or a service key's own (it belongs to exactly one)."""
    return chosen or (principal.organization_id if principal.is_service else None)


def named_organization(principal: Principal, chosen: str | None) -> str:
    """As ``implied_organization``, for routes that need one (400 without)."""
    organization_id = implied_organization(principal, chosen)
    if organization_id is None:
        raise missing_organization()
    return organization_id


async def org_access(
    access: Annotated[OrgAccess | None, Depends(optional_org_access)],
) -> OrgAccess:
    if access is None:
        raise missing_organization()
    return access


OrgAccessDep = Annotated[OrgAccess, Depends(org_access)]


async def listing_access(
    principal: PrincipalDep,
    session: SessionDep,
    chosen: RequestedOrganizationDep,
    end_user_id: RequestedEndUserDep,
) -> OrgAccess:
    """As ``OrgAccessDep``, for the connection list: a service key naming no end user sees
    every end user's connections of its organization (``OrgAccess.all_end_users``)."""
    chosen = named_organization(principal, chosen)
    return await IdentityService(session).organization_access(
        principal, chosen, end_user_id, end_user_required=False
    )


ListingAccessDep = Annotated[OrgAccess, Depends(listing_access)]


async def member_access(
    principal: PrincipalDep, session: SessionDep, chosen: RequestedOrganizationDep
) -> OrgAccess:
    """A user key's access in the organization, for routes about the organization rather than
    an end user (its settings, its API keys): a service key is refused (403) after the
    organization check, as every key in another organization is."""
    chosen = named_organization(principal, chosen)
    if principal.is_service:
        if chosen != principal.organization_id:  # another organization: 403 for that first
            raise OrganizationAccessDenied(FOREIGN_SERVICE_KEY)
        raise InsufficientPermissions(SERVICE_KEY_NOT_ADMIN)
    return await IdentityService(session).organization_access(principal, chosen)


MemberAccessDep = Annotated[OrgAccess, Depends(member_access)]


async def admin_access(access: MemberAccessDep) -> OrgAccess:
    """An organization admin's or owner's access (403 for members and service keys), for the
    routes that change or reveal the organization's settings (OAuth apps, webhook endpoints)."""
    access.require_admin()
    return access


AdminAccessDep = Annotated[OrgAccess, Depends(admin_access)]


async def platform_access(
    principal: PrincipalDep, session: SessionDep, chosen: RequestedOrganizationDep
) -> OrgAccess:
    """A service key in its organization, or an admin's or owner's user key: the callers that
    manage end users (``/end-users``); the path, not ``end_user_id``, names the end user."""
    chosen = named_organization(principal, chosen)
    if principal.bound_end_user_id is not None:
        raise InsufficientPermissions("A pct_ token acts for one end user, not for the platform.")
    if principal.is_service:
        return access_of(principal, chosen, None, end_user_required=False)
    access = await IdentityService(session).organization_access(principal, chosen)
    access.require_admin()
    return access


PlatformAccessDep = Annotated[OrgAccess, Depends(platform_access)]
OptionalOrgAccessDep = Annotated[OrgAccess | None, Depends(optional_org_access)]
