"""Flow logic: start an authorization, take the provider's answer, complete it.

The state token is the flow's only handle: hashed at rest, claimed once by the callback, and
answered to complete-oauth only for the user and organization that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from personal_connectors.apps.gateway import client_for, provider_call
from personal_connectors.apps.registrations import (
    CUSTOM_MCP,
    McpRegistrations,
    server_account_id,
)
from personal_connectors.connections.schemas import ConnectionOut, ConnectionSummary
from personal_connectors.connections.service import ConnectionService, McpServerOf
from personal_connectors.credentials.service import oauth_only
from personal_connectors.crypto import hashing
from personal_connectors.exceptions import (
    InvalidStateToken,
    ProviderError,
    UnknownConnectorType,
    ValidationFailed,
)
from personal_connectors.flows import binding
from personal_connectors.flows.binding import BrowserBinding
from personal_connectors.flows.custom_mcp import McpDiscovery, McpTarget, default_name
from personal_connectors.flows.device import DeviceFlows
from personal_connectors.flows.exceptions import FlowFailed, TooManyPendingFlows
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.flows.return_url import check_return_url
from personal_connectors.flows.schemas import (
    AuthorizeIn,
    AuthorizeOut,
    CompleteOut,
    ConnectedAtOnce,
    FlowError,
)
from personal_connectors.flows.state import new_state, state_hash
from personal_connectors.flows.steps import FlowSteps, flow_aad
from personal_connectors.identity.service import IdentityService, OrgAccess
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
from personal_connectors.oauth.identity import AccountIdentity
from personal_connectors.oauth.rfc9207 import IssuerMismatch, check_issuer
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.providers.templating import connection_params
from personal_connectors.runtime import Runtime

logger = logging.getLogger(__name__)

VERIFIER_PREFIX = "cv_"
_MAX_VERIFIER_LENGTH = 100

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
    # `require_verifier`: the one-time verifier for complete-oauth, for the return_url only.
    verifier: str | None = None

    @property
    def connected(self) -> bool:
        return self.error is None and self.connection_id is not None


@dataclass(frozen=True)
class _Plan:
    """What a flow is started with: the provider, the client, and what it asks for."""

    entry: ProviderEntry
    client: OAuthClient
    oauth_app_id: str | None
    params: dict[str, str]
    scopes: list[str]
    extends: Connection | None
    # A custom MCP server's flow (SPEC §11): the server and the registration it uses.
    mcp_server_url: str | None = None
    mcp_registration_id: str | None = None
    display_name: str | None = None


def _merge_scopes(*groups: list[str] | None) -> list[str]:
    merged: list[str] = []
    for group in groups:
        for scope in group or []:
            if scope not in merged:
                merged.append(scope)
    return merged


class FlowService(FlowSteps):
    """Redirect and device flows: start, callback, complete-oauth."""

    # --- POST /authorize -------------------------------------------------------------------

    async def authorize(
        self, access: OrgAccess, request: AuthorizeIn
    ) -> AuthorizeOut | ConnectedAtOnce:
        """``POST /authorize``: a catalog connector's flow, or a custom MCP server's (SPEC §11),
        which is connected at once when the server needs no authorization."""
        if request.connector_type != CUSTOM_MCP:
            if request.mcp_server_url is not None or request.display_name is not None:
                raise ValidationFailed.for_fields(
                    f"mcp_server_url and display_name are for connector_type {CUSTOM_MCP}.",
                    *(
                        name
                        for name in ("mcp_server_url", "display_name")
                        if getattr(request, name) is not None
                    ),
                )
            return await self.start(access, request)
        if request.mcp_server_url is None:
            raise ValidationFailed.for_fields(
                f"connector_type {CUSTOM_MCP} needs mcp_server_url: the MCP server's URL.",
                "mcp_server_url",
            )
        unsupported = [
            name
            for name, given in (
                ("integration_params", request.integration_params is not None),
                ("connection_id", request.connection_id is not None),
                ("grant", request.grant != FlowGrant.AUTHORIZATION_CODE.value),
            )
            if given
        ]
        if unsupported:
            raise ValidationFailed.for_fields(
                f"A {CUSTOM_MCP} flow takes no {', '.join(unsupported)}: it is a browser flow "
                "with the MCP server's own authorization server.",
                *unsupported,
            )
        return_url = self._checked_return_url(request)
        now = utcnow()
        await self._check_pending_bound(access.user_id, now)
        target = await McpDiscovery(self.session, self.runtime).target(
            access.organization_id, request.mcp_server_url
        )
        if target.registration is None:
            return await self._connect_open_server(access, request, target)
        registered = await McpRegistrations(self.session, self.runtime).client(
            target.registration.id
        )
        assert registered is not None  # (just stored)
        entry, client = registered
        plan = _Plan(
            entry=entry,
            client=client,
            oauth_app_id=None,
            params={},
            scopes=_merge_scopes(target.scopes, request.scopes),
            extends=None,
            mcp_server_url=target.server_url,
            mcp_registration_id=target.registration.id,
            display_name=request.display_name,
        )
        return await self._open(access, request, return_url, now, plan, None)

    async def _connect_open_server(
        self, access: OrgAccess, request: AuthorizeIn, target: McpTarget
    ) -> ConnectedAtOnce:
        """A custom MCP server that answered without authorization: connected now."""
        access = await IdentityService(self.session).acting_end_user(access)  # input valid
        connections = ConnectionService(self.session, self.runtime)
        connection, _ = await connections.save_authorization(
            organization_id=access.organization_id,
            user_id=access.user_id,
            app_key=CUSTOM_MCP,
            oauth_app_id=None,
            integration_params={},
            identity=AccountIdentity(server_account_id(target.server_url), None, None),
            grant=None,
            mcp=McpServerOf(
                target.server_url,
                request.display_name or target.server_name or default_name(target.server_url),
                None,
            ),
        )
        shown = await connections.get_in(access, connection.id)
        return ConnectedAtOnce(connection=ConnectionOut.of(shown))

    def _checked_return_url(self, request: AuthorizeIn) -> str | None:
        return_url = (
            check_return_url(request.return_url, self.runtime.settings)
            if request.return_url is not None
            else None
        )
        if request.require_verifier and (
            return_url is None
            or request.completion != FlowCompletion.EXPLICIT.value
            or request.grant == FlowGrant.DEVICE_CODE.value
        ):
            raise ValidationFailed.for_fields(
                "require_verifier needs completion: explicit and a return_url, and a browser "
                "flow (the verifier reaches the returning browser only through the return_url "
                "redirect).",
                "require_verifier",
            )
        return return_url

    async def start(
        self, access: OrgAccess, request: AuthorizeIn, *, browser: BrowserBinding | None = None
    ) -> AuthorizeOut:
        """A catalog connector's flow. ``browser``: bind the flow to this browser secret (the
        connect page sets its cookie)."""
        entry = self.runtime.catalog.get(request.connector_type)
        if entry is None:
            raise UnknownConnectorType(
                request.connector_type, self.runtime.catalog.entries, "connector_type"
            )
        oauth_only(entry)
        return_url = self._checked_return_url(request)
        now = utcnow()
        await self._check_pending_bound(access.user_id, now)
        resolved = await self.apps.resolve(access.organization_id, entry.key)
        extends = await self._connection_to_extend(access, entry.key, request.connection_id)
        given = request.integration_params
        if given is None and extends is not None:
            # Extending a connection: its own values (a Zendesk subdomain) unless others are given.
            given = {
                name: value
                for name, value in extends.integration_params.items()
                if name not in entry.admin_params
            }
        params = connection_params(entry, given, resolved.app.integration_params)
        scopes = _merge_scopes(
            resolved.app.scopes if resolved.app.scopes is not None else entry.default_scopes,
            extends.scopes if extends is not None else None,
            request.scopes,
        )
        client = await client_for(self.runtime, entry, params, resolved.credentials)
        plan = _Plan(entry, client, resolved.app.id, params, scopes, extends)
        return await self._open(access, request, return_url, now, plan, browser)

    async def _open(
        self,
        access: OrgAccess,
        request: AuthorizeIn,
        return_url: str | None,
        now: datetime,
        plan: _Plan,
        browser: BrowserBinding | None,
    ) -> AuthorizeOut:
        """Store the flow ``plan`` describes and answer where the user consents."""
        entry, client, scopes, extends = plan.entry, plan.client, plan.scopes, plan.extends
        state = new_state()
        device = request.grant == FlowGrant.DEVICE_CODE.value
        verifier = new_code_verifier() if entry.pkce and not device else None
        authorization_url = (
            "" if device else await self._authorization_url(client, state, scopes, verifier)
        )
        access = await IdentityService(self.session).acting_end_user(access)  # input valid
        flow = Flow(
            id=new_id("flow"),
            state_hash=state_hash(state),
            organization_id=access.organization_id,
            user_id=access.user_id,
            app_key=entry.key,
            oauth_app_id=plan.oauth_app_id,
            mcp_registration_id=plan.mcp_registration_id,
            mcp_server_url=plan.mcp_server_url,
            display_name=plan.display_name,
            redirect_uri=self.runtime.settings.redirect_uri,
            scopes=scopes,
            integration_params=plan.params,
            return_url=return_url,
            completion=request.completion,
            require_verifier=request.require_verifier,
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
                verifier, flow_aad(flow.id, "code_verifier")
            )
        launch_url = None
        if browser is not None:
            flow.binding_hash = browser.digest
            flow.connect_session_id = browser.connect_session_id
            flow.connect_attempt = browser.attempt
        elif prompt is None:
            launch_url = binding.prepare_launch(flow, self.runtime, authorization_url)
            if not entry.returns_state:
                # No state comes back: only a browser-bound flow is recognised at the callback.
                authorization_url = launch_url
        self.repository.add(flow)
        await self.repository.purge_created_before(now - FLOW_RETENTION)
        await self.session.commit()
        return AuthorizeOut(
            authorization_url=authorization_url,
            launch_url=launch_url,
            state=state,
            state_token=state,
            expires_at=flow.expires_at,
            user_code=prompt.user_code if prompt else None,
            verification_uri=prompt.verification_uri if prompt else None,
            verification_uri_complete=prompt.verification_uri_complete if prompt else None,
            interval=prompt.interval if prompt else None,
        )

    async def _check_pending_bound(self, user_id: str, now: datetime) -> None:
        """At most ``max_pending_flows`` flows of one user wait for their callback at once."""
        limit = self.runtime.settings.max_pending_flows
        count, first_end = await self.repository.pending_of_user(user_id, now)
        if count < limit:
            return
        raise TooManyPendingFlows.for_bound(
            f"This user already has {count} sign-ins waiting for the provider (at most {limit}, "
            "CONNECTORS_MAX_PENDING_FLOWS). Finish or abandon one; each expires after "
            f"{self.runtime.settings.flow_ttl_seconds} s.",
            limit,
            first_end,
            now,
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
            binding.check(
                flow,
                self.runtime.catalog,
                cookies,
                org_requires_launch=await self.repository.requires_launch(flow.organization_id),
            )
            connection_id, verifier = await self._finish_callback(flow, params)
        except FlowFailed as failure:
            await self.fail(flow, failure)
            return CallbackOutcome(flow, None, None, failure)
        except Exception:
            # Never leave a claimed flow hanging in "exchanging": it would answer "not yet" forever.
            await self.session.rollback()
            await self.fail(flow, FlowFailed("server_error", "The connection could not be saved."))
            raise
        return CallbackOutcome(
            flow, connection_id, "active" if connection_id else None, None, verifier
        )

    async def _finish_callback(
        self, flow: Flow, params: CallbackParams
    ) -> tuple[str | None, str | None]:
        """(the connection's id, or None when explicit completion holds the grant; the
        completion verifier when the flow requires one)."""
        if params.error:
            # The provider's error_description is kept for complete-oauth's caller only; result
            # pages show a fixed sentence per code (flows/exceptions.py).
            raise FlowFailed(params.error, params.error_description or "The provider refused.")
        entry, client = await self.client(flow)
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
                flow.key_id, flow.code_verifier_ct, flow_aad(flow.id, "code_verifier")
            )
        grant, identity = await self.obtain(
            flow,
            entry,
            client,
            client.exchange_code(params.code, code_verifier=verifier, requested_scopes=flow.scopes),
        )
        grant = grant.with_metadata(
            {name: params.extra[name] for name in entry.callback_metadata if name in params.extra}
        )
        if flow.completion == FlowCompletion.EXPLICIT:
            return None, await self._hold_grant(flow, grant, identity)
        return await self.connect(flow, grant, identity), None

    async def _hold_grant(
        self, flow: Flow, grant: TokenGrant, identity: AccountIdentity
    ) -> str | None:
        """Explicit completion: keep the grant sealed in the flow until complete-oauth. Returns
        the one-time completion verifier of a flow that requires one (kept only hashed, and
        stored in the same commit as the grant, so the two never exist apart)."""
        held = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "token_type": grant.token_type,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "scopes": grant.scopes,
            "identity": [identity.account_id, identity.email, identity.name],
            "metadata": grant.metadata,
        }
        flow.grant_ct = self.runtime.sealer.seal(json.dumps(held), flow_aad(flow.id, "grant"))
        flow.key_id = self.runtime.sealer.key_id  # the key may have rotated since /authorize
        flow.code_verifier_ct = None
        verifier = VERIFIER_PREFIX + hashing.random_token() if flow.require_verifier else None
        flow.verifier_hash = hashing.digest(verifier) if verifier is not None else None
        flow.status = FlowStatus.AUTHORIZED
        flow.finished_at = utcnow()
        await self.session.commit()
        self.runtime.flow_wakeups.notify(flow.id)
        return verifier

    def _held_grant(self, flow: Flow) -> tuple[TokenGrant, AccountIdentity]:
        assert flow.grant_ct is not None
        held: dict[str, Any] = json.loads(
            self.runtime.sealer.open(flow.key_id, flow.grant_ct, flow_aad(flow.id, "grant"))
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

    # --- POST /complete-oauth --------------------------------------------------------------

    async def complete(
        self, access: OrgAccess, state_token: str, verifier: str | None = None, *, wait: int = 0
    ) -> CompleteOut:
        """complete-oauth's answer; with ``wait`` (seconds), held until the flow is over or
        that time has passed, whichever comes first.

        The answer of an unfinished flow is asked again each time the flow may have changed:
        at once when this process finished it (``runtime.flow_wakeups``), within
        ``complete_wait_poll_seconds`` when another process did, and — for a device flow —
        when the provider may be polled again. No database connection is held in between.
        """
        flow, answer = await self._complete(access, state_token, verifier)
        if wait <= 0 or _finished(answer):
            return answer
        deadline = asyncio.get_running_loop().time() + wait
        logger.debug("flow %s: complete-oauth waits up to %d s", flow.id, wait)
        await self.session.commit()  # (nothing is pending: this ends the read transaction)
        poll = functools.partial(_finished_among, self.runtime)
        with self.runtime.flow_wakeups.watch(flow.id, poll) as woken:
            while True:
                # Cleared before reading: a change after the read still wakes the wait below.
                woken.clear()
                self.session.expire_all()  # the flow is read afresh
                _, answer = await self._complete(access, state_token, verifier)
                remaining = deadline - asyncio.get_running_loop().time()
                if _finished(answer) or remaining <= 0:
                    return answer
                # End the transaction: no pooled connection (nor SQLite snapshot) is held while
                # waiting.
                await self.session.commit()
                timeout = remaining
                if answer.retry_after is not None:  # a device flow: poll the provider again then
                    timeout = min(remaining, max(answer.retry_after, 1))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout)

    async def _complete(
        self, access: OrgAccess, state_token: str, verifier: str | None
    ) -> tuple[Flow, CompleteOut]:
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
        if flow.require_verifier and flow.status in (FlowStatus.AUTHORIZED, FlowStatus.COMPLETED):
            _check_verifier(flow, verifier)
        if flow.status == FlowStatus.AUTHORIZED and await self.repository.claim(
            flow, FlowStatus.AUTHORIZED, FlowStatus.EXCHANGING
        ):
            grant, identity = self._held_grant(flow)
            await self.connect(flow, grant, identity)
        retry_after = None
        device = flow.grant_type == FlowGrant.DEVICE_CODE
        if device and flow.status == FlowStatus.PENDING:
            retry_after = await DeviceFlows(self).poll(flow)
        if flow.status in (FlowStatus.PENDING, FlowStatus.EXCHANGING, FlowStatus.AUTHORIZED):
            if flow.status == FlowStatus.PENDING and flow.expires_at <= now and not device:
                raise InvalidStateToken()
            return flow, CompleteOut(
                connected=False,
                connection=None,
                message="The user has not finished authorizing with the provider yet.",
                retry_after=retry_after if device else None,
            )
        if flow.status == FlowStatus.FAILED:
            return flow, CompleteOut(
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
        return flow, CompleteOut(
            connected=True,
            connection=ConnectionSummary(
                id=flow.connection_id or "", app_key=flow.app_key, status=status
            ),
            message="OAuth flow completed successfully",
        )


async def _finished_among(runtime: Runtime, flow_ids: list[str]) -> list[str]:
    """The shared poll of ``runtime.flow_wakeups``: the flows another process finished. A
    session of its own: it serves every waiting call of the process, not one request."""
    async with runtime.sessions() as session:
        return await FlowRepository(session).finished_among(flow_ids)


def _finished(answer: CompleteOut) -> bool:
    """Whether complete-oauth's answer is final (connected, or failed), not "not yet"."""
    return answer.connected or answer.error is not None


def _check_verifier(flow: Flow, presented: str | None) -> None:
    """A flow started with ``require_verifier`` completes only with the verifier its return_url
    redirect carried (checked on every call, so a repeated call gets the same answer)."""
    if (
        presented is None
        or not presented.startswith(VERIFIER_PREFIX)
        or len(presented) > _MAX_VERIFIER_LENGTH
        or flow.verifier_hash is None
        or not hashing.matches(presented, flow.verifier_hash)
    ):
        raise ValidationFailed.for_fields(
            "This flow was started with require_verifier: send the `verifier` that the "
            "return_url redirect carried to the browser that came back.",
            "verifier",
        )
