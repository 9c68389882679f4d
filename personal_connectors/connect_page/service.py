"""Connect sessions: created with the user's API key, then used by the user's browser alone.

The ``cs_…`` token is a bearer secret for one purpose: opening the connect page of one user in
one organization. It is stored only as a hash, is not an API key (``ak_…`` is the only prefix
the API accepts), and the page trades it for an HttpOnly cookie at once so it leaves the address
bar. The page's CSRF token is derived from the session token, so it needs no storage and a
leaked database row does not yield it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.connect_page.exceptions import ConnectorNotAllowed, ConnectSessionInvalid
from personal_connectors.connect_page.pages import CONNECT_PATH, Owner
from personal_connectors.connect_page.repository import ConnectSessionRepository
from personal_connectors.connect_page.schemas import ConnectSessionIn, ConnectSessionOut
from personal_connectors.connections.service import ConnectionService
from personal_connectors.credentials.service import CredentialsService
from personal_connectors.crypto import hashing
from personal_connectors.exceptions import (
    APIError,
    RateLimitExceeded,
    UnknownConnectorType,
    ValidationFailed,
)
from personal_connectors.flows.binding import BrowserBinding, new_binding
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.flows.return_url import check_return_url
from personal_connectors.flows.schemas import AuthorizeIn
from personal_connectors.flows.service import FlowService
from personal_connectors.flows.state import state_hash
from personal_connectors.identity.service import IdentityService, OrgAccess, Principal
from personal_connectors.models import (
    APIKey,
    APIKeyStatus,
    Connection,
    ConnectionStatus,
    ConnectSession,
    FlowStatus,
    new_id,
    utcnow,
)
from personal_connectors.providers.schema import CREDENTIALS_MODES, ProviderEntry
from personal_connectors.runtime import Runtime

TOKEN_PREFIX = "cs_"
_MAX_TOKEN_LENGTH = 100
# Expired sessions are kept a day (nothing secret in them), then purged on the next creation.
_RETENTION = timedelta(days=1)
# The page's handle for one popup attempt: random, made by the page's script.
ATTEMPT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class ActiveSession:
    """A valid connect session, as presented by the browser, with the access it grants."""

    record: ConnectSession
    token: str
    access: OrgAccess

    @property
    def csrf_token(self) -> str:
        return csrf_token_for(self.token)

    def allows(self, app_key: str) -> bool:
        allowed = self.record.allowed_connectors
        return allowed is None or app_key in allowed


def _usable(entry: ProviderEntry, configured: set[str]) -> bool:
    """An OAuth connector needs its app; a credentials one brings its own with each user."""
    return entry.key in configured or entry.auth_mode in CREDENTIALS_MODES


def csrf_token_for(session_token: str) -> str:
    return hashing.digest("csrf:" + session_token)


def csrf_matches(session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token_for(session_token), presented or "")


@dataclass(frozen=True)
class ConnectorView:
    key: str
    name: str
    description: str | None
    icon_url: str | None
    configured: bool
    # Connects with credentials typed into the page's form (SPEC §10), not through a popup.
    form: bool = False

    @property
    def letter(self) -> str:
        return (self.name[:1] or "?").upper()


@dataclass(frozen=True)
class ConnectionView:
    id: str
    app_key: str
    name: str
    icon_url: str | None
    account: str
    status: str
    is_active: bool
    form: bool = False  # reconnected with the credentials form

    @property
    def letter(self) -> str:
        return (self.name[:1] or "?").upper()

    @property
    def needs_reauth(self) -> bool:
        return self.status == ConnectionStatus.NEEDS_REAUTH


@dataclass(frozen=True)
class PageView:
    connectors: list[ConnectorView]
    connections: list[ConnectionView]
    owner: Owner


@dataclass(frozen=True)
class AttemptState:
    """What /connect/status says of one popup attempt: ``starting`` (no flow yet), ``pending``
    (the person is at the provider), ``connected`` or ``failed``."""

    state: str
    connector: str | None = None
    connection_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StartedConnect:
    authorization_url: str
    flow_id: str
    binding: BrowserBinding


class ConnectService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repository = ConnectSessionRepository(session)

    # --- POST /connect-sessions ------------------------------------------------------------

    async def create(self, access: OrgAccess, request: ConnectSessionIn) -> ConnectSessionOut:
        allowed = self._check_connectors(request.allowed_connectors)
        return_url = (
            check_return_url(request.return_url, self.runtime.settings)
            if request.return_url is not None
            else None
        )
        now = utcnow()
        await self._check_live_bound(access.user_id, now)
        access = await IdentityService(self.session).acting_end_user(access)  # input valid
        token = TOKEN_PREFIX + hashing.random_token()
        record = ConnectSession(
            id=new_id("csess"),
            token_hash=hashing.digest(token),
            organization_id=access.organization_id,
            user_id=access.user_id,
            api_key_id=access.principal.api_key_id,
            allowed_connectors=allowed,
            return_url=return_url,
            expires_at=now + timedelta(seconds=request.expires_in),
            created_at=now,
        )
        self.repository.add(record)
        await self.repository.purge_expired_before(now - _RETENTION)
        await self.session.commit()
        return ConnectSessionOut(
            token=token,
            connect_url=f"{self.runtime.settings.base_url}{CONNECT_PATH}?"
            + urlencode({"session": token}),
            expires_at=record.expires_at,
        )

    async def _check_live_bound(self, user_id: str, now: datetime) -> None:
        """At most ``max_connect_sessions`` valid sessions per user at once."""
        limit = self.runtime.settings.max_connect_sessions
        count, first_end = await self.repository.live_of_user(user_id, now)
        if count < limit:
            return
        raise RateLimitExceeded.for_bound(
            f"This user already has {count} valid connect sessions (at most {limit}, "
            "CONNECTORS_MAX_CONNECT_SESSIONS). Reuse one, or create sessions with a shorter "
            "expires_in.",
            limit,
            first_end,
            now,
        )

    def _check_connectors(self, keys: list[str] | None) -> list[str] | None:
        if keys is None:
            return None
        unknown = sorted({key for key in keys if self.runtime.catalog.get(key) is None})
        if unknown:
            raise UnknownConnectorType(
                unknown[0], self.runtime.catalog.entries, "allowed_connectors"
            )
        return list(dict.fromkeys(keys))  # de-duplicated, order kept

    # --- the browser's side ----------------------------------------------------------------

    async def authenticate(self, token: str | None) -> ActiveSession:
        """The session a presented token names, if it is still valid and its user still a
        member of the organization; otherwise ConnectSessionInvalid (all cases alike)."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            raise ConnectSessionInvalid("No valid connect session.")
        record = await self.repository.by_token_hash(hashing.digest(token))
        if record is None or record.expires_at <= utcnow():
            raise ConnectSessionInvalid("Unknown or expired connect session.")
        # The link lives no longer than the key that made it: revoking a key closes its links.
        key = await self.session.get(APIKey, record.api_key_id)
        if (
            key is None
            or key.status != APIKeyStatus.ACTIVE
            or (key.expires_at is not None and key.expires_at <= utcnow())
        ):
            raise ConnectSessionInvalid("The API key that created the session is not active.")
        principal = Principal(user_id=record.user_id, api_key_id=record.api_key_id)
        try:
            access = await IdentityService(self.session).organization_access(
                principal, record.organization_id
            )
        except APIError:
            raise ConnectSessionInvalid("The session's user left the organization.") from None
        return ActiveSession(record, token, access)

    def _entries(self, active: ActiveSession, configured: set[str]) -> list[ProviderEntry]:
        allowed = active.record.allowed_connectors
        if allowed is None:
            # Credentials connectors need no set-up, so nothing chooses among the catalog's
            # many: they are offered when the session names them (``allowed_connectors``).
            return [entry for entry in self.runtime.catalog if entry.key in configured]
        entries = (self.runtime.catalog.get(key) for key in allowed)
        return [entry for entry in entries if entry is not None]

    async def page(self, active: ActiveSession) -> PageView:
        apps = OAuthAppService(self.session, self.runtime.sealer, self.runtime.catalog)
        configured = await apps.configured_keys(active.access.organization_id)
        connectors = [
            ConnectorView(
                key=entry.key,
                name=entry.display_name,
                description=entry.description,
                icon_url=entry.icon_url,
                configured=_usable(entry, configured),
                form=entry.auth_mode in CREDENTIALS_MODES,
            )
            for entry in self._entries(active, configured)
        ]
        owned = await ConnectionService(self.session, self.runtime).list_for(active.access)
        connections = [self._connection_view(connection) for connection in owned]
        return PageView(
            connectors=connectors,
            connections=[view for view in connections if active.allows(view.app_key)],
            owner=await self.owner(active.record),
        )

    async def owner(self, record: ConnectSession) -> Owner:
        email, name, organization = await self.repository.owner_labels(record)
        return Owner(email, name, organization)

    async def end(self, active: ActiveSession) -> None:
        """The person declined the session ("this is not me"): the link stops working."""
        await self.repository.end(active.record, utcnow())

    async def attempt_state(self, active: ActiveSession, attempt: str | None) -> AttemptState:
        if attempt is None or not ATTEMPT_PATTERN.match(attempt):
            raise ValidationFailed.for_fields("attempt must be the page's attempt id.", "attempt")
        flow = await FlowRepository(self.session).by_attempt(active.record.id, attempt)
        if flow is None:
            return AttemptState("starting")
        if flow.status == FlowStatus.COMPLETED:
            return AttemptState("connected", flow.app_key, flow.connection_id)
        if flow.status == FlowStatus.FAILED:
            return AttemptState("failed", flow.app_key, error=flow.error_code or "server_error")
        if flow.status == FlowStatus.PENDING and flow.expires_at <= utcnow():
            return AttemptState("failed", flow.app_key, error="expired")
        return AttemptState("pending", flow.app_key)

    def _connection_view(self, connection: Connection) -> ConnectionView:
        entry = self.runtime.catalog.get(connection.app_key)
        return ConnectionView(
            id=connection.id,
            app_key=connection.app_key,
            name=entry.display_name if entry else connection.app_key,
            icon_url=entry.icon_url if entry else None,
            account=connection.account_email or connection.account_name or connection.account_id,
            status=connection.status,
            is_active=connection.is_active,
            form=connection.auth_mode in CREDENTIALS_MODES,
        )

    async def start(
        self, active: ActiveSession, connector_key: str, attempt: str | None = None
    ) -> StartedConnect:
        """Start a browser-bound flow for this session's user (FlowService.start does the rest:
        the OAuth app, scopes, PKCE, the state)."""
        if not active.allows(connector_key) or self.runtime.catalog.get(connector_key) is None:
            raise ConnectorNotAllowed(f"The session does not offer {connector_key[:64]}.")
        if attempt is not None and not ATTEMPT_PATTERN.match(attempt):
            attempt = None
        binding = new_binding(connect_session_id=active.record.id, attempt=attempt)
        started = await FlowService(self.session, self.runtime).start(
            active.access, AuthorizeIn(connector_type=connector_key), browser=binding
        )
        digest = state_hash(started.state)
        flow = await FlowRepository(self.session).by_state_hash(digest) if digest else None
        assert flow is not None  # (just started)
        return StartedConnect(started.authorization_url, flow.id, binding)

    def credentials_entry(self, active: ActiveSession, connector_key: str) -> ProviderEntry:
        """A connector this session offers that connects with the credentials form."""
        entry = self.runtime.catalog.get(connector_key)
        if (
            entry is None
            or not active.allows(entry.key)
            or entry.auth_mode not in CREDENTIALS_MODES
        ):
            raise ConnectorNotAllowed(
                f"The session offers no credentials form for {connector_key[:64]}."
            )
        return entry

    async def connect_with_credentials(
        self,
        active: ActiveSession,
        entry: ProviderEntry,
        fields: Mapping[str, str],
        params: Mapping[str, str],
    ) -> Connection:
        """The form's submission, checked and proved exactly as ``POST /credentials``."""
        connection, _ = await CredentialsService(self.session, self.runtime).connect(
            active.access, entry.key, fields, integration_params=params or None
        )
        return connection

    async def disconnect(self, active: ActiveSession, connection_id: str) -> None:
        connections = ConnectionService(self.session, self.runtime)
        connection = await connections.get_in(active.access, connection_id)
        if not active.allows(connection.app_key):
            raise ConnectorNotAllowed("The session does not offer this connection's connector.")
        await connections.disconnect(
            active.access.principal, connection.id, active.access.organization_id
        )
