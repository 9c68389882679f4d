"""HTTP routes of ``/api-keys`` (SPEC §8): user keys only; a service key is refused (403)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from personal_connectors.api_keys.schemas import APIKeyIn, APIKeyOut, IssuedKeyOut
from personal_connectors.api_keys.service import APIKeyService
from personal_connectors.http.dependencies import MemberAccessDep, SessionDep
from personal_connectors.models import ID_MAX_LENGTH, APIKey, KeyKind

router = APIRouter(tags=["API keys"])

KeyId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]


async def get_service(session: SessionDep) -> APIKeyService:
    return APIKeyService(session)


ServiceDep = Annotated[APIKeyService, Depends(get_service)]


def _out(key: APIKey) -> APIKeyOut:
    return APIKeyOut(
        id=key.id,
        kind=KeyKind(key.kind),
        name=key.name,
        prefix=key.prefix,
        user_id=key.user_id,
        status=key.status,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
    )


@router.post(
    "/api-keys",
    status_code=201,
    response_model=IssuedKeyOut,
    summary="Create an API key (shown once)",
)
async def create_api_key(
    body: APIKeyIn, access: MemberAccessDep, service: ServiceDep
) -> IssuedKeyOut:
    issued = await service.create(
        access, body.kind, name=body.name, expires_in_days=body.expires_in_days
    )
    key = issued.key
    return IssuedKeyOut(
        id=key.id,
        key=issued.plaintext,
        kind=KeyKind(key.kind),
        name=key.name,
        created_at=key.created_at,
        expires_at=key.expires_at,
    )


@router.get(
    "/api-keys",
    response_model=list[APIKeyOut],
    summary="The organization's keys (owners and admins) and the caller's own; never a secret",
)
async def list_api_keys(access: MemberAccessDep, service: ServiceDep) -> list[APIKeyOut]:
    return [_out(key) for key in await service.visible_to(access)]


@router.delete("/api-keys/{key_id}", status_code=204, summary="Delete an API key for good")
async def delete_api_key(key_id: KeyId, access: MemberAccessDep, service: ServiceDep) -> Response:
    await service.delete(access, key_id)
    return Response(status_code=204)
