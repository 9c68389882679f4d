"""Flow logic: start an authorization, take the provider's answer, complete it.

The state token is the flow's only handle: hashed at rest, claimed once by the callback, and
answered to complete-oauth only for the user and organization that started it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.connections.schemas import ConnectionSummary
from personal_connectors.connections.service import ConnectionService
from personal_connectors.crypto.aead import associated_data
from personal_connectors.exceptions import (
    APIError,
    InvalidStateToken,
    ProviderError,
    UnknownConnectorType,
    ValidationFailed,
)
from personal_connectors.flows import binding
from personal_connectors.flows.binding import BrowserBinding
from personal_connectors.flows.device import DeviceFlows
from personal_connectors.flows.exceptions import FlowFailed
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.flows.return_url import check_return_url
from personal_connectors.flows.schemas import AuthorizeIn, AuthorizeOut, CompleteOut, FlowError
from personal_connectors.flows.state import new_state, state_hash
from personal_connectors.identity.service import OrgAccess
from personal_connectors.models import (
    Connection,
    Flow,
    FlowCompletion,
    FlowGrant,
    FlowStatus,
    new_id,
    utcnow,
)
from personal_connectors.oauth.client import OAuthClient, TokenGrant, new_code_verifier
from personal_connectors.oauth.errors import ProviderFailure, ProviderRejected, ProviderUnreachable
from personal_connectors.oauth.rfc9207 import IssuerMismatch, check_issuer
from personal_connectors.providers.gateway import client_for, provider_call
from personal_connectors.providers.identity import AccountIdentity, read_identity
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.providers.templating import validate_integration_params
from personal_connectors.runtime import Runtime

logger = logging.getLogger(__name__)

# How long complete-oauth keeps answering for a finished flow (idempotence), after which the
# flow row — and any token it still holds — is purged.
FLOW_RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class CallbackParams:
    code: str | None
    state: str | None
    error: str | None
    error_description: str | None
    iss: str | None
    # The rest of the redirect's query: a few providers send values there that the catalog
    # keeps as provider metadata (QuickBooks `realmId`).
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallbackOutcome:
    flow: Flow
    connection_id: str | None
    status: str | None
    error: FlowFailed | None

    @property
    def connected(self) -> bool:
        return self.error is None and self.connection_id is not None


def _merge_scopes(*groups: list[str] | None) -> list[str]:
    merged: list[str] = []
    for group in groups:
        for scope in group or []:
            if scope not in merged:
                merged.append(scope)
    return merged


def _aad(flow_id: str, field: str) -> bytes:
    return associated_data("flows", flow_id, field)


class FlowService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repository = FlowRepository(session)
        self.apps = OAuthAppService(session, runtime.sealer, runtime.catalog)

    # --- POST /authorize -------------------------------------------------------------------

    async def start(
        self, access: OrgAccess, request: AuthorizeIn, *, browser: BrowserBinding | None = None
    ) -> AuthorizeOut:
        """``browser``: bind the flow to this browser secret (the connect page sets its cookie)."""
        entry = self.runtime.catalog.get(request.connector_type)
        if entry is None:
            raise UnknownConnectorType(
                request.connector_type, self.runtime.catalog.entries, "connector_type"
            )
        params = validate_integration_params(entry, request.integration_params)
        if request.return_url is not None:
            check_return_url(request.return_url, self.runtime.settings)
        resolved = await self.apps.resolve(access.organization_id, entry.key)
        extends = await self._connection_to_extend(access, entry.key, request.connection_id)
        scopes = _merge_scopes(
            resolved.app.scopes if resolved.app.scopes is not None else entry.default_scopes,
            extends.scopes if extends is not None else None,
            request.scopes,
        )
        client = await client_for(self.runtime, entry, params, resolved.credentials)
        state = new_state()
        device = request.grant == FlowGrant.DEVICE_CODE.value
        verifier = new_code_verifier() if entry.pkce and not device else None
        authorization_url = (
            "" if device else await self._authorization_url(client, state, scopes, verifier)
        )
        now = utcnow()
        flow = Flow(
            id=new_id("flow"),
            state_hash=state_hash(state),
            organization_id=access.organization_id,
            user_id=access.user_id,
            app_key=entry.key,
            oauth_app_id=resolved.app.id,
            redirect_uri=self.runtime.settings.redirect_uri,
            scopes=scopes,
            integration_params=params,
            return_url=request.return_url,
            completion=request.completion,
            status=FlowStatus.PENDING,
            key_id=self.runtime.sealer.key_id,
            expires_at=now + timedelta(seconds=self.runtime.settings.flow_ttl_seconds),
            created_at=now,
            grant_type=FlowGrant.AUTHORIZATION_CODE,
            extends_connection_id=extends.id if extends is not None else None,
        )
        prompt = await DeviceFlows(self).begin(flow, client) if device else None
        if prompt is not None:
            authorization_url = prompt.authorization_url
        if verifier is not None:
            flow.code_verifier_ct = self.runtime.sealer.seal(
                verifier, _aad(flow.id, "code_verifier")
            )
        if browser is not None:
            flow.binding_hash = browser.digest
            flow.connect_session_id = browser.connect_session_id
        elif not entry.returns_state and prompt is None:
            # No state comes back: only a browser-bound flow can be recognised at the callback.
            authorization_url = binding.prepare_launch(flow, self.runtime, authorization_url)
        self.repository.add(flow)
        await self.repository.purge_created_before(now - FLOW_RETENTION)
        await self.session.commit()
        return AuthorizeOut(
            authorization_url=authorization_url,
            state=state,
            state_token=state,
            expires_at=flow.expires_at,
            user_code=prompt.user_code if prompt else None,
            verification_uri=prompt.verification_uri if prompt else None,
            verification_uri_complete=prompt.verification_uri_complete if prompt else None,
            interval=prompt.interval if prompt else None,
        )

    async def _authorization_url(
        self, client: OAuthClient, state: str, scopes: list[str], verifier: str | None
    ) -> str:
        """RFC 9126 when the provider offers PAR (and must when it requires it), else a plain URL.

        Pushing keeps scope, redirect URI, state and PKCE challenge off the browser's URL and
        lets the provider check them, authenticated, before the user sees anything.
        """
        if client.endpoints.par_url is None:
            if client.endpoints.require_par:
                raise ProviderError("The provider requires PAR but names no PAR endpoint.")
            return client.authorization_url(state=state, scopes=scopes, code_verifier=verifier)
        async with provider_call("pushed authorization request"):
            return await client.pushed_authorization_url(
                state=state, scopes=scopes, code_verifier=verifier
            )

    async def _connection_to_extend(
        self, access: OrgAccess, app_key: str, connection_id: str | None
    ) -> Connection | None:
        """Incremental authorization: the caller's live connection of this connector (else 404)."""
        if connection_id is None:
            return None
        connection = await ConnectionService(self.session, self.runtime).get_in(
            access, connection_id
        )
        if connection.app_key != app_key:
            raise ValidationFailed.for_fields(
                "connection_id names a connection of another connector.", "connection_id"
            )
        return connection

    # --- GET /callback ---------------------------------------------------------------------

    async def find_pending(self, state: str | None) -> Flow:
        """The flow a callback's state names, if it is still waiting for this callback."""
        digest = state_hash(state) if state else None
        flow = await self.repository.by_state_hash(digest) if digest else None
        if (
            flow is None
            or flow.status != FlowStatus.PENDING
            or flow.expires_at <= utcnow()
            or flow.grant_type != FlowGrant.AUTHORIZATION_CODE  # device flows have no callback
        ):
            raise InvalidStateToken()
        return flow

    async def handle_callback(
        self, params: CallbackParams, cookies: Mapping[str, str] | None = None
    ) -> CallbackOutcome:
        """``cookies``: the browser's, for the flow's browser binding (flows/binding.py)."""
        cookies = cookies or {}
        if params.state is None:
            # A provider that drops `state`: the flow is found by this browser's binding only.
            found = await binding.find_stateless(self.session, self.runtime.catalog, cookies)
            if found is None:
                raise InvalidStateToken()
            flow = found
        else:
            flow = await self.find_pending(params.state)
        # Single use: only the first callback for a state gets past this line.
        if not await self.repository.claim(flow, FlowStatus.PENDING, FlowStatus.EXCHANGING):
            raise InvalidStateToken()
        try:
            # Before anything else: a foreign browser's callback never reaches the token endpoint.
            binding.check(flow, self.runtime.catalog, cookies)
            connection_id = await self._finish_callback(flow, params)
        except FlowFailed as failure:
            await self._fail(flow, failure)
            return CallbackOutcome(flow, None, None, failure)
        except Exception:
            # Never leave a claimed flow hanging in "exchanging": it would answer "not yet" forever.
            await self.session.rollback()
            await self._fail(flow, FlowFailed("server_error", "The connection could not be saved."))
            raise
        return CallbackOutcome(flow, connection_id, "active" if connection_id else None, None)

    async def _finish_callback(self, flow: Flow, params: CallbackParams) -> str | None:
        if params.error:
            raise FlowFailed(params.error, params.error_description or "The provider refused.")
        entry, client = await self._client(flow)
        try:
            check_issuer(
                params.iss, client.endpoints.issuer, client.endpoints.iss_parameter_supported
            )
        except IssuerMismatch as exc:
            logger.warning("flow %s: authorization response refused: %s", flow.id, exc)
            raise FlowFailed(
                "issuer_mismatch", "The response did not come from the expected provider."
            ) from None
        if not params.code:
            raise FlowFailed("invalid_request", "The provider sent no authorization code.")
        verifier = None
        if flow.code_verifier_ct is not None:
            verifier = self.runtime.sealer.open(
                flow.key_id, flow.code_verifier_ct, _aad(flow.id, "code_verifier")
            )
        grant, identity = await self._obtain(
            flow,
            entry,
            client,
            client.exchange_code(params.code, code_verifier=verifier, requested_scopes=flow.scopes),
        )
        grant = grant.with_metadata(
            {name: params.extra[name] for name in entry.callback_metadata if name in params.extra}
        )
        if flow.completion == FlowCompletion.EXPLICIT:
            await self._hold_grant(flow, grant, identity)
            return None
        return await self._connect(flow, grant, identity)

    async def _client(self, flow: Flow) -> tuple[ProviderEntry, OAuthClient]:
        entry = self.runtime.catalog.get(flow.app_key)
        resolved = await self.apps.by_id(flow.oauth_app_id)
        if entry is None or resolved is None:
            raise FlowFailed("server_error", "The connector is no longer configured.")
        try:
            return entry, await client_for(
                self.runtime, entry, flow.integration_params, resolved.credentials
            )
        except APIError:  # the metadata document could not be fetched or was refused
            raise FlowFailed(
                "temporarily_unavailable", "The provider could not be reached."
            ) from None

    async def _obtain(
        self,
        flow: Flow,
        entry: ProviderEntry,
        client: OAuthClient,
        token_request: Awaitable[TokenGrant],
    ) -> tuple[TokenGrant, AccountIdentity]:
        """Any grant's token request (code exchange, device polling), then the identity call.

        Provider failures end the flow; a flow that extends a connection must bring back
        that connection's account, never silently connect another one.
        """
        try:
            grant = await token_request
            identity = await read_identity(entry, client.endpoints, grant, self.runtime.http)
        except ProviderRejected as exc:
            raise FlowFailed(
                exc.error, exc.description or "The provider refused the code."
            ) from None
        except ProviderUnreachable:
            raise FlowFailed(
                "temporarily_unavailable", "The provider could not be reached."
            ) from None
        except ProviderFailure as exc:
            raise FlowFailed("provider_error", str(exc)) from None
        if flow.extends_connection_id is not None:
            extended = await self.session.get(Connection, flow.extends_connection_id)
            if extended is None or extended.account_id != identity.account_id:
                raise FlowFailed(
                    "account_mismatch",
                    "Another account consented than the one of the connection to extend.",
                )
        return grant, identity

    async def _connect(self, flow: Flow, grant: TokenGrant, identity: AccountIdentity) -> str:
        connection, _ = await ConnectionService(self.session, self.runtime).save_authorization(
            organization_id=flow.organization_id,
            user_id=flow.user_id,
            app_key=flow.app_key,
            oauth_app_id=flow.oauth_app_id,
            integration_params=flow.integration_params,
            identity=identity,
            grant=grant,
        )
        flow.status = FlowStatus.COMPLETED
        flow.connection_id = connection.id
        flow.grant_ct = None
        flow.code_verifier_ct = None
        flow.finished_at = utcnow()
        await self.session.commit()
        return connection.id

    async def _hold_grant(self, flow: Flow, grant: TokenGrant, identity: AccountIdentity) -> None:
        """Explicit completion: keep the grant sealed in the flow until complete-oauth."""
        held = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "token_type": grant.token_type,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "scopes": grant.scopes,
            "identity": [identity.account_id, identity.email, identity.name],
            "metadata": grant.metadata,
        }
        flow.grant_ct = self.runtime.sealer.seal(json.dumps(held), _aad(flow.id, "grant"))
        flow.key_id = self.runtime.sealer.key_id  # the key may have rotated since /authorize
        flow.code_verifier_ct = None
        flow.status = FlowStatus.AUTHORIZED
        flow.finished_at = utcnow()
        await self.session.commit()

    def _held_grant(self, flow: Flow) -> tuple[TokenGrant, AccountIdentity]:
        assert flow.grant_ct is not None
        held: dict[str, Any] = json.loads(
            self.runtime.sealer.open(flow.key_id, flow.grant_ct, _aad(flow.id, "grant"))
        )
        account_id, email, name = held["identity"]
        expires_at = datetime.fromisoformat(held["expires_at"]) if held["expires_at"] else None
        grant = TokenGrant(
            held["access_token"],
            held["refresh_token"],
            held["token_type"],
            expires_at,
            held["scopes"],
            metadata=held.get("metadata") or {},
        )
        return grant, AccountIdentity(account_id, email, name)

    async def _fail(self, flow: Flow, failure: FlowFailed) -> None:
        flow.status = FlowStatus.FAILED
        flow.error_code = failure.code
        flow.error_description = failure.description
        flow.code_verifier_ct = None
        flow.finished_at = utcnow()
        await self.session.commit()

    # --- POST /complete-oauth --------------------------------------------------------------

    async def complete(self, access: OrgAccess, state_token: str) -> CompleteOut:
        digest = state_hash(state_token)
        flow = await self.repository.by_state_hash(digest) if digest else None
        now = utcnow()
        if (
            flow is None
            or flow.user_id != access.user_id
            or flow.organization_id != access.organization_id
            or flow.created_at + FLOW_RETENTION <= now
        ):
            raise InvalidStateToken()
        if flow.status == FlowStatus.AUTHORIZED and await self.repository.claim(
            flow, FlowStatus.AUTHORIZED, FlowStatus.EXCHANGING
        ):
            grant, identity = self._held_grant(flow)
            await self._connect(flow, grant, identity)
        retry_after = None
        device = flow.grant_type == FlowGrant.DEVICE_CODE
        if device and flow.status == FlowStatus.PENDING:
            retry_after = await DeviceFlows(self).poll(flow)
        if flow.status in (FlowStatus.PENDING, FlowStatus.EXCHANGING, FlowStatus.AUTHORIZED):
            if flow.status == FlowStatus.PENDING and flow.expires_at <= now and not device:
                raise InvalidStateToken()
            return CompleteOut(
                connected=False,
                connection=None,
                message="The user has not finished authorizing with the provider yet.",
                retry_after=retry_after if device else None,
            )
        if flow.status == FlowStatus.FAILED:
            return CompleteOut(
                connected=False,
                connection=None,
                message="The authorization did not succeed.",
                error=FlowError(
                    code=flow.error_code or "server_error", description=flow.error_description
                ),
            )
        connection = (
            await self.session.get(Connection, flow.connection_id) if flow.connection_id else None
        )
        status = connection.status if connection is not None else "deleted"
        return CompleteOut(
            connected=True,
            connection=ConnectionSummary(
                id=flow.connection_id or "", app_key=flow.app_key, status=status
            ),
            message="OAuth flow completed successfully",
        )
