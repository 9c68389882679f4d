"""``connectors orgs|users|api-keys``: the identities API callers authenticate as."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit
from personal_connectors.identity.service import IdentityService, IssuedAPIKey
from personal_connectors.models import APIKeyStatus, Organization, Role, User
from personal_connectors.runtime import Runtime

orgs = typer.Typer(no_args_is_help=True)
users = typer.Typer(no_args_is_help=True)
api_keys = typer.Typer(no_args_is_help=True)


@orgs.command("create")
def create_org(name: str, as_json: bool = JsonOption) -> None:
    """Create an organization."""

    async def work(session: AsyncSession, _: Runtime) -> Organization:
        return await IdentityService(session).create_organization(name)

    org = run_with_session(work)
    emit({"id": org.id, "name": org.name}, as_json, f"Created organization {org.id} ({org.name})")


@users.command("create")
def create_user(
    email: str,
    org: Annotated[str, typer.Option("--org", help="The organization the user joins.")],
    role: Annotated[Role, typer.Option("--role", help="owner, admin or member.")] = Role.MEMBER,
    name: Annotated[str | None, typer.Option("--name")] = None,
    as_json: bool = JsonOption,
) -> None:
    """Create a user (or add an existing one) as a member of an organization."""

    async def work(session: AsyncSession, _: Runtime) -> User:
        return await IdentityService(session).create_user(email, org, role=role, name=name)

    user = run_with_session(work)
    emit(
        {"id": user.id, "email": user.email},
        as_json,
        f"Created user {user.id} <{user.email}> in {org} as {role.value}",
    )


@api_keys.command("create")
def create_api_key(
    user: Annotated[str, typer.Option("--user", help="The user the key acts as.")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    expires_in_days: Annotated[int | None, typer.Option("--expires-in-days", min=1)] = None,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key. The key is printed once and cannot be shown again."""

    async def work(session: AsyncSession, _: Runtime) -> IssuedAPIKey:
        return await IdentityService(session).create_api_key(
            user, name=name, expires_in_days=expires_in_days
        )

    issued = run_with_session(work)
    emit(
        {"id": issued.key.id, "key": issued.plaintext},
        as_json,
        f"Created API key {issued.key.id}. Copy it now, it is not shown again:\n{issued.plaintext}",
    )


@api_keys.command("revoke")
def revoke_api_key(key_id: str, as_json: bool = JsonOption) -> None:
    """Deactivate an API key for good."""

    async def work(session: AsyncSession, _: Runtime) -> str:
        key = await IdentityService(session).set_api_key_status(key_id, APIKeyStatus.DEACTIVATED)
        return key.id

    revoked = run_with_session(work)
    emit(
        {"id": revoked, "status": APIKeyStatus.DEACTIVATED.value},
        as_json,
        f"Deactivated API key {revoked}",
    )
