"""The client the service is at a custom MCP server's authorization server (SPEC §11).

A custom server's connections and flows have no OAuth app of the catalog: they use the service's
RFC 7591 registration for that server in that organization (``McpClientRegistration``), made
once and then reused by every user of the organization — never for another server, even one
that names the same authorization server. ``registration_entry`` turns a registration into the
catalog entry the flow, refresh and revocation code already speak: the authorization server's
checked endpoints, PKCE, the registered client authentication, and the server's canonical URI
as the RFC 8707 ``resource`` of the authorization request and of every token request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.repository import McpRegistrationRepository
from personal_connectors.crypto.aead import associated_data
from personal_connectors.exceptions import Conflict, ValidationFailed
from personal_connectors.models import McpClientRegistration, new_id, utcnow
from personal_connectors.oauth import rfc7591
from personal_connectors.oauth.client import ClientCredentials, OAuthClient, TokenGrant
from personal_connectors.oauth.endpoints import ProviderEndpoints
from personal_connectors.oauth.errors import ProviderBadAnswer
from personal_connectors.oauth.identity import AccountIdentity
from personal_connectors.oauth.rfc7517 import KeySetUnavailable
from personal_connectors.oauth.rfc8693 import ExchangeError, verify_subject_token
from personal_connectors.oauth.rfc8707 import resource_params
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime

logger = logging.getLogger(__name__)

CUSTOM_MCP = "custom_mcp"
CLIENT_NAME = "Personal Connectors"
# A registration whose secret expires sooner than this is made again before a new flow.
SECRET_RENEWAL_MARGIN = timedelta(minutes=10)


def _aad(registration_id: str) -> bytes:
    return associated_data("mcp_client_registrations", registration_id, "client_secret")


def registration_entry(registration: McpClientRegistration) -> ProviderEntry:
    """The catalog entry of ``registration``'s server (built, not validated: every URL in it
    passed the outbound rule and the metadata checks when the registration was made)."""
    resource = resource_params(registration.server_url)
    return ProviderEntry.model_construct(
        key=CUSTOM_MCP,
        display_name="Custom MCP server",
        issuer=registration.issuer,
        authorization_url=registration.authorization_endpoint,
        token_url=registration.token_endpoint,
        revocation_url=registration.revocation_endpoint,
        pkce=True,
        token_endpoint_auth_method=_auth_method(registration.token_endpoint_auth_method),
        # OpenID Connect grants offline_access (a refresh token) only with consent asked.
        authorization_params={**resource, "prompt": "consent"},
        token_params=resource,
    )


def _auth_method(stored: str) -> Literal["client_secret_basic", "client_secret_post", "none"]:
    if stored == "client_secret_post":
        return "client_secret_post"
    if stored == rfc7591.PUBLIC:
        return "none"
    return "client_secret_basic"


def registration_endpoints(registration: McpClientRegistration) -> ProviderEndpoints:
    return ProviderEndpoints(
        authorization_url=registration.authorization_endpoint,
        token_url=registration.token_endpoint,
        revocation_url=registration.revocation_endpoint,
        issuer=registration.issuer,
        iss_parameter_supported=registration.iss_parameter_supported,
    )


class McpRegistrations:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repository = McpRegistrationRepository(session)

    async def get(self, registration_id: str | None) -> McpClientRegistration | None:
        return await self.repository.get_by_id(registration_id) if registration_id else None

    def credentials(self, registration: McpClientRegistration) -> ClientCredentials:
        secret = self.runtime.sealer.open(
            registration.key_id, registration.client_secret_ct, _aad(registration.id)
        )
        return ClientCredentials(registration.client_id, secret)

    async def client(
        self, registration_id: str | None, *, call_seconds: float | None = None
    ) -> tuple[ProviderEntry, OAuthClient] | None:
        """The entry and OAuth client of a registration; None when it is gone."""
        registration = await self.get(registration_id)
        if registration is None:
            return None
        entry = registration_entry(registration)
        return entry, OAuthClient(
            entry,
            registration_endpoints(registration),
            self.credentials(registration),
            redirect_uri=self.runtime.settings.redirect_uri,
            timeout=call_seconds or self.runtime.settings.provider_timeout_seconds,
            http=self.runtime.http,
        )

    async def for_server(
        self,
        organization_id: str,
        server_url: str,
        metadata: dict[str, Any],
        *,
        registration_endpoint: str,
        scope: str | None,
    ) -> McpClientRegistration:
        """The organization's registration for ``server_url`` at the authorization server
        ``metadata`` describes: the one kept, unless it was made at another authorization
        server or its secret is about to expire; else a new one (RFC 7591). Commits.

        Raises ``oauth.errors`` failures of the registration request.
        """
        kept = await self.repository.for_server(organization_id, server_url)
        if kept is not None and kept.bound:
            return await self.use_bound(kept, metadata)
        if kept is not None and self._still_good(kept, metadata):
            self._update_endpoints(kept, metadata)
            await self.session.commit()
            return kept
        method = rfc7591.auth_method_for(metadata)
        if method is None:
            raise ProviderBadAnswer(
                "the authorization server offers no client authentication this service uses "
                f"({', '.join(rfc7591.AUTH_METHODS)})"
            )
        registered = await rfc7591.register(
            self.runtime.http,
            registration_endpoint,
            rfc7591.client_metadata(
                redirect_uri=self.runtime.settings.redirect_uri,
                client_name=CLIENT_NAME,
                auth_method=method,
                scope=scope,
            ),
            call_seconds=self.runtime.settings.provider_timeout_seconds,
        )
        if kept is not None and kept.issuer != metadata["issuer"]:
            # Another authorization server: its connections' tokens were issued by the old one
            # and must never be sent to the new one. They lose their client (and, when their
            # tokens expire, are to be connected again); the new client is a row of its own.
            await self.repository.delete(kept)
            kept = None
        registration = kept or McpClientRegistration(
            id=new_id("mcr"), organization_id=organization_id, server_url=server_url
        )
        self._hold(
            registration,
            metadata,
            ClientCredentials(registered.client_id, registered.client_secret),
            registered.token_endpoint_auth_method,
            registered.client_secret_expires_at,
        )
        if kept is None:
            self.repository.add(registration)
        try:
            await self.session.commit()
        except IntegrityError:
            # Another request registered for this server at the same moment: use that one (the
            # registration just made stays unused at the authorization server).
            await self.session.rollback()
            raced = await self.repository.for_server(organization_id, server_url)
            if raced is None:
                raise
            logger.info("registration for an MCP server raced; using the one stored first")
            return raced
        return registration

    async def bound_for(
        self, organization_id: str, server_url: str
    ) -> McpClientRegistration | None:
        """The app an administrator bound to ``server_url`` in the organization, if any."""
        kept = await self.repository.for_server(organization_id, server_url)
        return kept if kept is not None and kept.bound else None

    async def bound_of(self, organization_id: str) -> Sequence[McpClientRegistration]:
        return await self.repository.bound_of(organization_id)

    async def use_bound(
        self, registration: McpClientRegistration, metadata: dict[str, Any]
    ) -> McpClientRegistration:
        """A bound app for a new flow: its authorization server's endpoints as read now, as
        long as the server still names the authorization server the app was bound at. Commits."""
        if registration.issuer != metadata["issuer"]:
            raise ValidationFailed(
                f"The app bound to this MCP server is registered at {registration.issuer}, but "
                f"the server now names {metadata['issuer']} as its authorization server. An "
                "administrator binds an app registered there (PUT /apps/custom_mcp)."
            )
        self._update_endpoints(registration, metadata)
        await self.session.commit()
        return registration

    async def bind(
        self,
        organization_id: str,
        server_url: str,
        metadata: dict[str, Any],
        credentials: ClientCredentials,
        auth_method: str,
    ) -> McpClientRegistration:
        """Bind an app registered by hand at the authorization server ``metadata`` describes
        to ``server_url`` (SPEC §11), in place of the service's registration: flows for the
        server use it from now on. Commits."""
        registration = await self.repository.for_server(organization_id, server_url)
        if registration is not None and (
            registration.issuer != metadata["issuer"]
            or registration.client_id != credentials.client_id
        ):
            await self._refuse_if_used(registration, "bind another client")
            await self.repository.delete(registration)
            registration = None
        if registration is None:
            registration = McpClientRegistration(
                id=new_id("mcr"), organization_id=organization_id, server_url=server_url
            )
            self.repository.add(registration)
        self._hold(registration, metadata, credentials, auth_method, None, bound=True)
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise Conflict(
                "Another request bound or registered a client for this MCP server at the same "
                "moment; send the request again."
            ) from None
        return registration

    async def unbind(self, organization_id: str, server_url: str) -> bool:
        """Remove the app bound to ``server_url``; False when none is. Refused (409) while
        connections made with it live."""
        bound = await self.bound_for(organization_id, server_url)
        if bound is None:
            return False
        await self._refuse_if_used(bound, "unbind it")
        await self.repository.delete(bound)
        await self.session.commit()
        return True

    async def _refuse_if_used(self, registration: McpClientRegistration, to: str) -> None:
        """409 while live connections hold tokens of the registration's client: without it
        they could not refresh or revoke them, and another client must never receive them."""
        using = await self.repository.connections_using(registration.id)
        if using:
            raise Conflict(
                f"{using} connection(s) to this MCP server hold tokens issued to its current "
                f"client ({registration.client_id}). To {to}, delete those connections first "
                "(DELETE /{id} revokes their tokens); binding the same client_id again only "
                "replaces its secret.",
                details={"connections": using},
            )

    def _hold(
        self,
        registration: McpClientRegistration,
        metadata: dict[str, Any],
        credentials: ClientCredentials,
        auth_method: str,
        secret_expires_at: datetime | None,
        *,
        bound: bool = False,
    ) -> None:
        """Write a client (its secret sealed) and its authorization server into the row."""
        registration.issuer = metadata["issuer"]
        self._update_endpoints(registration, metadata)
        registration.client_id = credentials.client_id
        registration.client_secret_ct = self.runtime.sealer.seal(
            credentials.client_secret, _aad(registration.id)
        )
        registration.key_id = self.runtime.sealer.key_id
        registration.token_endpoint_auth_method = auth_method
        registration.client_secret_expires_at = secret_expires_at
        registration.bound = bound

    @staticmethod
    def _still_good(registration: McpClientRegistration, metadata: dict[str, Any]) -> bool:
        expires = registration.client_secret_expires_at
        return registration.issuer == metadata["issuer"] and (
            expires is None or expires > utcnow() + SECRET_RENEWAL_MARGIN
        )

    @staticmethod
    def _update_endpoints(registration: McpClientRegistration, metadata: dict[str, Any]) -> None:
        registration.authorization_endpoint = metadata["authorization_endpoint"]
        registration.token_endpoint = metadata["token_endpoint"]
        registration.revocation_endpoint = metadata.get("revocation_endpoint")
        jwks_uri = metadata.get("jwks_uri")
        registration.jwks_uri = jwks_uri if isinstance(jwks_uri, str) else None
        registration.iss_parameter_supported = bool(
            metadata.get("authorization_response_iss_parameter_supported", False)
        )

    async def identity(
        self, registration: McpClientRegistration, grant: TokenGrant, server_url: str
    ) -> AccountIdentity:
        """Who consented: the subject of the ID token the authorization server sent with the
        grant (verified with its published keys, for this client), else the server itself
        (one connection per user and server)."""
        if grant.id_token is None or registration.jwks_uri is None:
            return AccountIdentity(server_account_id(server_url), None, None)
        jwks_uri, http = registration.jwks_uri, self.runtime.http

        async def keys_for(kid: str | None) -> Any:
            return await self.runtime.key_sets.get(http, jwks_uri, kid)

        try:
            verified = await verify_subject_token(
                grant.id_token,
                issuer=registration.issuer,
                audience=registration.client_id,
                subject_claim="sub",
                keys_for=keys_for,
            )
        except (ExchangeError, KeySetUnavailable) as exc:
            reason = exc.description if isinstance(exc, ExchangeError) else str(exc)
            raise ProviderBadAnswer(f"the ID token is not acceptable: {reason}") from None
        claims = verified.claims
        email, name = claims.get("email"), claims.get("name")
        return AccountIdentity(
            verified.subject[:255],
            email if isinstance(email, str) else None,
            name if isinstance(name, str) else None,
        )


def server_account_id(server_url: str) -> str:
    """The account id of a connection whose server tells no subject: the server's URL (the
    column holds 255 characters; a longer URL is named by its digest)."""
    if len(server_url) <= 255:
        return server_url
    from personal_connectors.crypto import hashing

    return "sha256:" + hashing.digest(server_url)
