"""Service keys and the end users they act for (SPEC §8), as the tests' callers."""

from __future__ import annotations

import os
from dataclasses import dataclass

from personal_connectors.identity.service import IdentityService
from personal_connectors.models import KeyKind, Role
from tests.conftest import Tenant
from tests.support import outputs
from tests.support.service import ServiceProcess


@dataclass(frozen=True)
class OrganizationKey:
    """A service (or exchange) key of one organization."""

    organization_id: str
    api_key: str
    api_key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    @property
    def org(self) -> dict[str, str]:
        return {"organization_id": self.organization_id}

    def acting_for(self, end_user_id: str) -> EndUserCaller:
        return EndUserCaller(self.organization_id, "", self.api_key, self.api_key_id, end_user_id)


@dataclass(frozen=True)
class EndUserCaller(Tenant):
    """A service key acting for one end user: a ``Tenant`` whose ``org`` query also names the
    end user, so the flow helpers (tests/flows/conftest.py) drive flows for it unchanged."""

    end_user_id: str = ""

    @property
    def org(self) -> dict[str, str]:
        return {"organization_id": self.organization_id, "end_user_id": self.end_user_id}


def make_organization_key(
    service: ServiceProcess, organization_id: str, kind: KeyKind = KeyKind.SERVICE
) -> OrganizationKey:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        issued = await IdentityService(session).create_organization_key(organization_id, kind)
        outputs.RECORD.add_secret(issued.plaintext, "api_key")
        return OrganizationKey(organization_id, issued.plaintext, issued.key.id)

    return service.run_db(work)


def make_member(service: ServiceProcess, organization_id: str, role: Role = Role.MEMBER) -> Tenant:
    """Another user of an existing organization, with a user key."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        user = await identities.create_user(
            f"{os.urandom(6).hex()}@example.test", organization_id, role=role
        )
        issued = await identities.create_api_key(user.id)
        outputs.RECORD.add_secret(issued.plaintext, "api_key")
        return Tenant(organization_id, user.id, issued.plaintext, issued.key.id)

    return service.run_db(work)
