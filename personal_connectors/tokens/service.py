"""Handing out valid access tokens: the hot path of the service (SPEC §3.3).

A current token costs one read (``authorize``: key, membership or end user, and connection in
one query),
a decryption and an in-memory audit record; no write and no commit. Only a token inside the
provider's refresh margin (or a forced refresh) goes through the ``Refresher``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import API_PREFIX
from personal_connectors.exceptions import APIError, ValidationFailed
from personal_connectors.identity.service import (
    IdentityService,
    OrgAccess,
    access_of,
    presented_key_hash,
    principal_of,
)
from personal_connectors.models import (
    ID_MAX_LENGTH,
    NO_AUTH_MODE,
    Connection,
    ConnectionStatus,
    utcnow,
)
from personal_connectors.providers.scopes import MAX_SCOPES, SCOPE_MAX_LENGTH, Scope
from personal_connectors.runtime import Runtime
from personal_connectors.telemetry.metrics import count_handout
from personal_connectors.tokens.exceptions import (
    ConnectionDisabled,
    ConnectionNotFound,
    InsufficientScope,
    ReauthorizationRequired,
)
from personal_connectors.tokens.lifetime import needs_refresh
from personal_connectors.tokens.records import ConnectionLike
from personal_connectors.tokens.refresh import FreshToken, Refresher
from personal_connectors.tokens.repository import TokenRepository
from personal_connectors.tokens.schemas import TokenOut
from personal_connectors.tokens.vault import TokenVault

# Modes whose connections hold no token: the token route hands out the fields (none for a
# custom MCP server that needs no authorization).
KEPT_MODES = frozenset({"api_key", "basic", NO_AUTH_MODE})

_SCOPES = TypeAdapter(list[Scope])


def required_scopes(text: str | None) -> list[str]:
    """The scopes a ``required_scopes`` value names: separated by spaces, each once, in order;
    none for an absent or empty value."""
    if not text:
        return []  # the common request: nothing to check
    named = list(dict.fromkeys(scope for scope in text.split(" ") if scope))
    try:
        if len(named) > MAX_SCOPES:
            raise ValueError
        return _SCOPES.validate_python(named)
    except (ValueError, ValidationError):
        raise ValidationFailed.for_fields(
            "required_scopes must be scope names separated by spaces (printable ASCII, at most "
            f"{SCOPE_MAX_LENGTH} characters each, at most {MAX_SCOPES} scopes).",
            "required_scopes",
        ) from None


def check_scopes(connection: ConnectionLike, required: list[str], granted: Iterable[str]) -> None:
    """409 ``INSUFFICIENT_SCOPE`` when ``granted`` lacks any of ``required``, with the body of
    the ``POST /authorize`` that asks the user for them on this connection (incremental
    authorization keeps the scopes it has)."""
    if not required:
        return
    held = set(granted)
    missing = [scope for scope in required if scope not in held]
    if not missing:
        return
    authorize: dict[str, Any] = {
        "connector_type": connection.app_key,
        "connection_id": connection.id,
        "scopes": missing,
    }
    raise InsufficientScope(
        f"The connection lacks the scopes {' '.join(missing)}. POST {API_PREFIX}/authorize with "
        "details.authorize as the body asks the user to grant them on this connection; then ask "
        "for the token again.",
        details={"missing_scopes": missing, "authorize": authorize},
    )


@dataclass(frozen=True)
class TokenRequest:
    """An authorized caller and the connection they asked for (None: not theirs, or unknown)."""

    access: OrgAccess
    connection: ConnectionLike | None


class TokenService:
    def __init__(self, session: AsyncSession | None, runtime: Runtime) -> None:
        """``session``: the caller's, whose read transaction ends before a refresh; None when
        the caller holds none (the token route, whose lookup has its own short session)."""
        self.session = session
        self.runtime = runtime

    async def authorize(
        self,
        presented_key: str | None,
        organization_id: str,
        connection_id: str,
        end_user_id: str | None = None,
    ) -> TokenRequest:
        """Authenticate, check the membership (a service key: find the end user it names) and
        find the connection, in one query.

        The refusals are those of ``IdentityService.authenticate`` and ``organization_access``
        (the same functions decide them), in the same order; the connection is not refused
        here, so that request validation still comes before a 404, as on every other route.
        """
        key_hash = presented_key_hash(presented_key)
        repository = TokenRepository(self.runtime.sessions, self.runtime.hot_reader)
        found = await repository.lookup(key_hash, organization_id, connection_id, end_user_id)
        principal = principal_of(key_hash, found.key if found else None)
        self.runtime.key_use.record(principal.api_key_id)
        role = found.role if found is not None and len(organization_id) <= ID_MAX_LENGTH else None
        end_user = found.end_user_user_id if found is not None else None
        access = access_of(principal, organization_id, role, end_user_id, end_user)
        connection = (
            found.connection if found is not None and len(connection_id) <= ID_MAX_LENGTH else None
        )
        return TokenRequest(access, connection)

    async def authorize_exchanged(
        self,
        presented: str,
        organization_id: str | None,
        connection_id: str,
        end_user_id: str | None,
    ) -> TokenRequest:
        """As ``authorize``, for a ``pct_`` token (identity.pct): its key checked by id, then
        its end user's connection; not the single-statement path of keys."""
        async with self.runtime.sessions() as session:
            identities = IdentityService(session)
            principal = await identities.authenticate_exchanged(self.runtime.sealer, presented)
            self.runtime.key_use.record(principal.api_key_id)
            organization_id = organization_id or principal.organization_id or ""
            access = await identities.organization_access(principal, organization_id, end_user_id)
            connection = None
            if access.user_id and 0 < len(connection_id) <= ID_MAX_LENGTH:
                connection = await TokenRepository.owned(
                    session, connection_id, access.user_id, organization_id
                )
        return TokenRequest(access, connection)

    async def issue(
        self, request: TokenRequest, *, force_refresh: bool, scopes_text: str | None = None
    ) -> TokenOut:
        """The connection's access token, refreshed first if due; recorded in the audit trail.

        ``scopes_text``: the ``required_scopes`` query value. A connection that lacks one of
        them is refused before any refresh (a refresh would not add it), and again after a
        refresh that came back with fewer scopes.
        """
        required = required_scopes(scopes_text)
        connection = request.connection
        if connection is None:
            raise ConnectionNotFound()
        try:
            if not connection.is_active:
                raise ConnectionDisabled("The connection is disabled; enable it to use its token.")
            if connection.auth_mode in KEPT_MODES:  # (an OAuth connection never branches here)
                kept = await self._kept_credentials(request, connection)
                count_handout(connection.app_key, "credentials")
                return kept
            check_scopes(connection, required, connection.scopes or ())
            token = await self.fresh_token(connection, force=force_refresh)
            if token.refreshed:
                check_scopes(connection, required, token.scopes)
        except APIError as exc:
            count_handout(connection.app_key, exc.code.lower())
            raise
        count_handout(connection.app_key, "refreshed" if token.refreshed else "current")
        self.runtime.token_audit.record(
            connection.id,
            connection.organization_id,
            request.access.principal.api_key_id,
            refreshed=token.refreshed,
        )
        return TokenOut(
            access_token=token.access_token,
            token_type=token.token_type,
            expires_at=token.expires_at,
            scopes=token.scopes,
            connection_id=connection.id,
            app_key=connection.app_key,
            provider_metadata=connection.provider_metadata or {},
            auth_mode=connection.auth_mode,
        )

    async def _kept_credentials(
        self, request: TokenRequest, connection: ConnectionLike
    ) -> TokenOut:
        """An ``api_key``/``basic`` connection's answer: no token, its credentials fields (read
        only now, so the token route reads no more for OAuth connections). Scopes are unknown
        for such credentials, so ``required_scopes`` is not checked against them."""
        if connection.status == ConnectionStatus.NEEDS_REAUTH:
            raise ReauthorizationRequired(
                connection.status_reason or "The provider refused the stored credentials."
            )
        values: dict[str, str] = {}  # a custom MCP server that needs no authorization: none
        if connection.auth_mode != NO_AUTH_MODE:
            sealed = await TokenRepository.credentials_of(self.runtime.sessions, connection.id)
            if sealed is None:
                raise ConnectionNotFound()  # deleted since the lookup
            key_id, blob = sealed
            values = TokenVault(self.runtime.sealer).open_credentials(connection.id, key_id, blob)
        self.runtime.token_audit.record(
            connection.id,
            connection.organization_id,
            request.access.principal.api_key_id,
            refreshed=False,
        )
        return TokenOut(
            access_token=None,
            token_type=None,
            expires_at=None,
            scopes=list(connection.scopes or []),
            connection_id=connection.id,
            app_key=connection.app_key,
            provider_metadata=connection.provider_metadata or {},
            auth_mode=connection.auth_mode,
            credentials=values,
        )

    async def fresh_token(self, connection: ConnectionLike, *, force: bool = False) -> FreshToken:
        if connection.status == ConnectionStatus.NEEDS_REAUTH:
            raise ReauthorizationRequired(
                connection.status_reason or "The provider rejected the refresh token."
            )
        entry = self.runtime.catalog.get(connection.app_key)
        refresher = Refresher(self.runtime)
        if force or needs_refresh(connection, entry, utcnow()):
            # End the read transaction first: a caller waiting on another's refresh must not
            # hold a pooled connection the refresher itself needs.
            if self.session is not None:
                await self.session.commit()
            return await refresher.refresh(connection, force=force)
        return refresher.current(connection)

    async def valid_access_token(self, connection: Connection) -> str | None:
        """An access token for ``connection`` that is valid now (refreshed first if needed)."""
        return (await self.fresh_token(connection)).access_token
