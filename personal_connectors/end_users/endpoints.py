"""HTTP routes of ``/end-users`` (SPEC §8): for a service key or an owner's or admin's key."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Response

from personal_connectors.config import API_PREFIX
from personal_connectors.end_users.schemas import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    EndUserIn,
    EndUserOut,
)
from personal_connectors.end_users.service import EndUserService
from personal_connectors.http.dependencies import PlatformAccessDep, RuntimeDep, SessionDep

router = APIRouter(tags=["End users"])

EndUserId = Annotated[str, "The platform's id for the end user (its `end_user_id`)."]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> EndUserService:
    return EndUserService(session, runtime)


ServiceDep = Annotated[EndUserService, Depends(get_service)]


@router.get(
    "/end-users",
    response_model=list[EndUserOut],
    summary="The organization's end users, a page at a time (next page: the `Link` header)",
)
async def list_end_users(
    access: PlatformAccessDep,
    service: ServiceDep,
    runtime: RuntimeDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    after: Annotated[
        str | None,
        Query(max_length=128, description="The cursor of the next page, from the Link header."),
    ] = None,
) -> list[EndUserOut]:
    page = await service.page(access, after=after, limit=limit)
    if page.next_after is not None:
        query = urlencode(
            {"organization_id": access.organization_id, "limit": limit, "after": page.next_after}
        )
        url = f"{runtime.settings.base_url}{API_PREFIX}/end-users?{query}"
        response.headers["Link"] = f'<{url}>; rel="next"'
    return page.end_users


@router.put(
    "/end-users/{end_user_id}",
    response_model=EndUserOut,
    summary="Create or describe an end user",
)
async def put_end_user(
    end_user_id: EndUserId,
    access: PlatformAccessDep,
    service: ServiceDep,
    body: EndUserIn | None = None,
) -> EndUserOut:
    return await service.put(access, end_user_id, body or EndUserIn())


@router.get("/end-users/{end_user_id}", response_model=EndUserOut, summary="One end user")
async def get_end_user(
    end_user_id: EndUserId, access: PlatformAccessDep, service: ServiceDep
) -> EndUserOut:
    return await service.get(access, end_user_id)


@router.delete(
    "/end-users/{end_user_id}",
    status_code=204,
    summary="Erase an end user: its connections revoked at their providers and deleted",
)
async def delete_end_user(
    end_user_id: EndUserId, access: PlatformAccessDep, service: ServiceDep
) -> Response:
    await service.delete(access, end_user_id)
    return Response(status_code=204)
