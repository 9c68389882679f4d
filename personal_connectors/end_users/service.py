"""End users: created on a service key's first write, described by PUT, erased by DELETE."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.connections.service import ConnectionService
from personal_connectors.connections.tags import check_tags
from personal_connectors.end_users.repository import EndUserRepository
from personal_connectors.end_users.schemas import EndUserIn, EndUserOut
from personal_connectors.exceptions import ResourceNotFound, ValidationFailed
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.identity.service import (
    END_USER_ID_RULE,
    IdentityService,
    OrgAccess,
    valid_end_user_id,
)
from personal_connectors.models import EndUser
from personal_connectors.runtime import Runtime
from personal_connectors.storage.paging import Page, PageRequest


def checked_end_user_id(end_user_id: str) -> str:
    if not valid_end_user_id(end_user_id):
        raise ValidationFailed.for_fields(END_USER_ID_RULE, "end_user_id")
    return end_user_id


class EndUserService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repository = EndUserRepository(session)
        self.identities = IdentityRepository(session)

    async def put(self, access: OrgAccess, end_user_id: str, body: EndUserIn) -> EndUserOut:
        """Create the end user if new, then set the fields the body names."""
        external_id = checked_end_user_id(end_user_id)
        tags = check_tags(body.tags) if body.tags is not None else {}  # before anything is made
        end_user = await IdentityService(self.session).ensure_end_user(
            access.organization_id, external_id
        )
        given = body.model_fields_set
        if "email" in given:
            end_user.email = body.email
        if "display_name" in given:
            end_user.display_name = body.display_name or None
        if "tags" in given:
            end_user.tags = tags
        await self.session.commit()
        return await self._shown(access, end_user)

    async def get(self, access: OrgAccess, end_user_id: str) -> EndUserOut:
        return await self._shown(access, await self._find(access, end_user_id))

    async def page(self, access: OrgAccess, page: PageRequest) -> Page[EndUserOut]:
        found = await self.repository.page(access.organization_id, page)
        counts = await self.repository.connection_counts(
            access.organization_id, [end_user.user_id for end_user in found.items]
        )
        shown = [EndUserOut.of(one, counts.get(one.user_id, 0)) for one in found.items]
        return Page(shown, found.next)

    async def delete(self, access: OrgAccess, end_user_id: str) -> None:
        """Erase the end user: each of its connections revoked at its provider (bounded, failures
        recorded in the audit trail, never blocking) and deleted, then the end user with
        everything it owned."""
        end_user = await self._find(access, end_user_id)
        connections = ConnectionService(self.session, self.runtime)
        for connection in await ConnectionRepository(self.session).list_owned(
            access.organization_id, end_user.user_id
        ):
            await connections.remove(connection)
        await self.repository.delete_with_user(end_user)
        await self.session.commit()

    async def _find(self, access: OrgAccess, end_user_id: str) -> EndUser:
        external_id = checked_end_user_id(end_user_id)
        end_user = await self.identities.get_end_user(access.organization_id, external_id)
        if end_user is None:
            raise ResourceNotFound("No end user with this id in the organization.")
        return end_user

    async def _shown(self, access: OrgAccess, end_user: EndUser) -> EndUserOut:
        counts = await self.repository.connection_counts(access.organization_id, [end_user.user_id])
        return EndUserOut.of(end_user, counts.get(end_user.user_id, 0))
