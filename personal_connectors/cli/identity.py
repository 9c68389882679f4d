"""``connectors orgs|users|api-keys``: the identities API callers authenticate as."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit, emit_table, fail
from personal_connectors.identity.exceptions import IdentityError
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.identity.service import IdentityService, IssuedAPIKey
from personal_connectors.models import APIKey, APIKeyStatus, KeyKind, Organization, Role, User
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


@orgs.command("list")
def list_orgs(as_json: bool = JsonOption) -> None:
    """List the organizations."""

    async def work(session: AsyncSession, _: Runtime) -> list[dict[str, object]]:
        return [
            {"id": org.id, "name": org.name, "created_at": org.created_at.isoformat()}
            for org in await IdentityRepository(session).organizations()
        ]

    emit_table(run_with_session(work), ["id", "name", "created_at"], as_json, "Organizations")


@users.command("list")
def list_users(
    org: Annotated[str, typer.Option("--org", help="The organization.")],
    as_json: bool = JsonOption,
) -> None:
    """List an organization's users and their roles (its end users are not users: see the
    API's /end-users)."""

    async def work(session: AsyncSession, _: Runtime) -> list[dict[str, object]]:
        repository = IdentityRepository(session)
        if await repository.get_organization(org) is None:
            raise IdentityError(f"no organization {org}")
        return [
            {"id": user.id, "email": user.email, "name": user.name, "role": role}
            for user, role in await repository.members(org)
        ]

    emit_table(run_with_session(work), ["id", "email", "name", "role"], as_json, f"Users of {org}")


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
    user: Annotated[
        str | None, typer.Option("--user", help="A user key: the user it acts as.")
    ] = None,
    org: Annotated[
        str | None,
        typer.Option("--org", help="With --service or --exchange: the organization it belongs to."),
    ] = None,
    service: Annotated[
        bool,
        typer.Option("--service", help="A service key: acts for the organization's end users."),
    ] = False,
    exchange: Annotated[
        bool, typer.Option("--exchange", help="An exchange key (for the token exchange).")
    ] = False,
    name: Annotated[str | None, typer.Option("--name")] = None,
    expires_in_days: Annotated[int | None, typer.Option("--expires-in-days", min=1)] = None,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key: --user USER_ID, or --org ORG_ID --service (or --exchange). The key is
    printed once and cannot be shown again."""
    if service and exchange:
        fail("choose one of --service and --exchange")
    kind = KeyKind.SERVICE if service else KeyKind.EXCHANGE if exchange else KeyKind.USER
    if kind == KeyKind.USER and (user is None or org is not None):
        fail(
            "a user key needs --user USER_ID (and no --org); an organization key needs "
            "--org ORG_ID with --service or --exchange"
        )
    if kind != KeyKind.USER and (org is None or user is not None):
        fail(f"a {kind.value} key needs --org ORG_ID (and no --user)")

    async def work(session: AsyncSession, _: Runtime) -> IssuedAPIKey:
        identities = IdentityService(session)
        if user is not None:
            return await identities.create_api_key(user, name=name, expires_in_days=expires_in_days)
        assert org is not None  # (checked above)
        return await identities.create_organization_key(
            org, kind, name=name, expires_in_days=expires_in_days
        )

    issued = run_with_session(work)
    emit(
        {"id": issued.key.id, "key": issued.plaintext},
        as_json,
        f"Created {kind.value} API key {issued.key.id}. Copy it now, it is not shown again:\n"
        f"{issued.plaintext}",
    )


@api_keys.command("list")
def list_api_keys(
    org: Annotated[str, typer.Option("--org", help="The organization.")],
    as_json: bool = JsonOption,
) -> None:
    """List an organization's service and exchange keys and its users' keys (never a secret)."""

    async def work(session: AsyncSession, _: Runtime) -> list[dict[str, object]]:
        repository = IdentityRepository(session)
        if await repository.get_organization(org) is None:
            raise IdentityError(f"no organization {org}")
        members = [user.id for user, _ in await repository.members(org)]
        keys = [*await repository.organization_keys(org), *await repository.user_keys(members)]
        return [_key_row(key) for key in keys]

    emit_table(
        run_with_session(work),
        ["id", "kind", "name", "prefix", "user_id", "status", "expires_at"],
        as_json,
        f"API keys of {org}",
    )


def _key_row(key: APIKey) -> dict[str, object]:
    return {
        "id": key.id,
        "kind": key.kind,
        "name": key.name,
        "prefix": key.prefix,
        "user_id": key.user_id,
        "organization_id": key.organization_id,
        "status": key.status,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
    }


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
