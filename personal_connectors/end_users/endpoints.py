"""HTTP routes of ``/end-users`` (SPEC §8): for a service key or an owner's or admin's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from personal_connectors.end_users.schemas import EndUserIn, EndUserOut
from personal_connectors.end_users.service import EndUserService
from personal_connectors.http.dependencies import PlatformAccessDep, RuntimeDep, SessionDep
from personal_connectors.http.paging import NEXT_LINK_RESPONSE, PageDep, set_next_link

router = APIRouter(tags=["End users"])

EndUserId = Annotated[str, "The platform's id for the end user (its `end_user_id`)."]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> EndUserService:
    return EndUserService(session, runtime)


ServiceDep = Annotated[EndUserService, Depends(get_service)]


@router.get(
    "/end-users",
    response_model=list[EndUserOut],
    summary="The organization's end users, newest first, a page at a time",
    responses=NEXT_LINK_RESPONSE,
)
async def list_end_users(
    request: Request,
    response: Response,
    access: PlatformAccessDep,
    service: ServiceDep,
    runtime: RuntimeDep,
    page: PageDep,
) -> list[EndUserOut]:
    """The next page's URL is in the `Link` header (none on the last page); the body is the
    bare array."""
    listed = await service.page(access, page)
    set_next_link(response, request, runtime.settings.base_url, listed.next)
    return listed.items


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
