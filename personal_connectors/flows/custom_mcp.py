"""Where a custom MCP server's flow goes (SPEC §11, ``connector_type: custom_mcp``).

The MCP authorization spec's discovery, each step checked before the next: the server is asked
without a token (an ``initialize`` over Streamable HTTP); one that answers needs no
authorization. One that answers 401 names its protected resource metadata (RFC 9728), whose
``resource`` must be the server itself; its first authorization server's metadata (RFC 8414,
then OpenID discovery) must carry exactly that issuer and offer PKCE S256; the app an
administrator bound to the server is used, else the authorization server must offer dynamic
client registration and the organization's registration for this server there is reused or made
(``apps.registrations``). Every URL on the way follows the outbound rule (SPEC §9): the server's
URL is checked here, and the outbound guard judges each address connected to. A refusal is a
400 that says what is wrong and stores nothing; a server or authorization server that does not
answer is a 503.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.registrations import McpRegistrations
from personal_connectors.exceptions import (
    ProviderError,
    ProviderUnavailable,
    ResourceNotFound,
    ValidationFailed,
)
from personal_connectors.mcp_servers.outcomes import (
    ServerAnsweredError,
    ServerFailure,
    ServerNotAllowed,
    TokenRefused,
)
from personal_connectors.models import McpClientRegistration
from personal_connectors.models.mcp_registration import DISPLAY_NAME_MAX_LENGTH
from personal_connectors.oauth import rfc9728
from personal_connectors.oauth.client import ClientCredentials
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderBadAnswer,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.oauth.rfc8414 import DiscoveryError, MetadataUnavailable, issuer_metadata
from personal_connectors.oauth.rfc8707 import canonical_resource
from personal_connectors.outbound.urls import check_url
from personal_connectors.runtime import Runtime

FIELD = "mcp_server_url"
PKCE_METHOD = "S256"
# Asked for besides the server's own scopes when its authorization server offers them: who
# consented (an ID token's subject) and a refresh token.
OPENID_SCOPES = ("openid", "offline_access")
RETRY_AFTER = {"Retry-After": "30"}


@dataclass(frozen=True)
class McpTarget:
    """A custom MCP server, checked: with the registration to authorize at, or None when it
    needs no authorization (then ``server_name`` is its ``serverInfo.name``)."""

    server_url: str
    registration: McpClientRegistration | None
    server_name: str | None
    scopes: list[str]


def default_name(server_url: str) -> str:
    """A server's name when neither the caller nor the server gave one: its host."""
    return urlsplit(server_url).hostname or server_url


def refused(reason: str) -> ValidationFailed:
    return ValidationFailed.for_fields(
        f"The MCP server at mcp_server_url cannot be connected: {reason}.", FIELD
    )


def unavailable(reason: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"The MCP server could not be connected now: {reason}; try again.", headers=RETRY_AFTER
    )


class McpDiscovery:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.timeout = runtime.settings.provider_timeout_seconds

    async def target(self, organization_id: str, url: str) -> McpTarget:
        server_url = self._checked(url)
        challenge = await self._challenge(server_url)
        if isinstance(challenge, McpTarget):
            return challenge
        resource, metadata = await self._authorization_server(server_url, challenge)
        registrations = McpRegistrations(self.session, self.runtime)
        bound = await registrations.bound_for(organization_id, server_url)
        if bound is not None:  # an administrator's app: no registration needed
            registration = await registrations.use_bound(bound, dict(metadata))
        else:
            endpoint = metadata.get("registration_endpoint")
            if not isinstance(endpoint, str) or not endpoint:
                raise refused(
                    "its authorization server offers no dynamic client registration (RFC 7591); "
                    "an administrator can bind an app registered there instead "
                    "(PUT /apps/custom_mcp)"
                )
            registration = await self._registration(organization_id, server_url, metadata, endpoint)
        return McpTarget(
            server_url, registration, None, self._scopes(challenge, resource, metadata)
        )

    async def bind(
        self, organization_id: str, url: str, credentials: ClientCredentials, auth_method: str
    ) -> McpClientRegistration:
        """Bind an administrator's app to the server at ``url`` (SPEC §11), after the same
        discovery and checks as a flow: the app is registered at the authorization server the
        server names now."""
        server_url = self._checked(url)
        challenge = await self._challenge(server_url)
        if isinstance(challenge, McpTarget):
            raise refused("it needs no authorization: connect it without an app")
        _, metadata = await self._authorization_server(server_url, challenge)
        return await McpRegistrations(self.session, self.runtime).bind(
            organization_id, server_url, dict(metadata), credentials, auth_method
        )

    async def unbind(self, organization_id: str, url: str) -> None:
        server_url = self._checked(url)
        if not await McpRegistrations(self.session, self.runtime).unbind(
            organization_id, server_url
        ):
            raise ResourceNotFound("No app is bound to this MCP server in the organization.")

    async def _authorization_server(
        self, server_url: str, challenge: str | None
    ) -> tuple[rfc9728.ProtectedResource, dict[str, object]]:
        """The server's protected resource metadata and its authorization server's, checked
        (RFC 9728, RFC 8414 / OpenID discovery, PKCE with S256)."""
        try:
            resource = await rfc9728.discover(
                self.runtime.http, server_url, challenge, call_seconds=self.timeout
            )
        except rfc9728.ResourceMetadataUnavailable as exc:
            raise unavailable(str(exc)) from None
        except rfc9728.ResourceMetadataError as exc:
            raise refused(str(exc)) from None
        issuer = resource.authorization_servers[0]
        try:
            metadata = await issuer_metadata(
                self.runtime.http,
                self.runtime.metadata,
                issuer,
                allow_http=self.runtime.settings.loopback_allowed,
            )
        except MetadataUnavailable as exc:
            raise unavailable(f"its authorization server's {exc}") from None
        except DiscoveryError as exc:
            raise refused(f"its authorization server's {exc}") from None
        methods = metadata.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or PKCE_METHOD not in methods:
            raise refused("its authorization server does not offer PKCE with S256")
        return resource, metadata

    def _checked(self, url: str) -> str:
        checked = check_url(url, allow_internal=self.runtime.settings.loopback_allowed, field=FIELD)
        try:
            return canonical_resource(checked)
        except ValueError:
            raise refused("it is not an absolute http(s) URL") from None

    async def _challenge(self, server_url: str) -> McpTarget | str | None:
        """The server's ``WWW-Authenticate`` when it wants authorization, else the server
        itself as a target that needs none."""
        from personal_connectors.mcp_servers.client import server_info

        try:
            async with asyncio.timeout(self.timeout):
                info = await server_info(self.runtime.http, server_url)
        except TokenRefused as exc:
            return exc.challenge
        except ServerNotAllowed as exc:
            raise refused(str(exc)) from None
        except ServerAnsweredError as exc:
            raise refused(f"it does not answer as an MCP server ({exc})") from None
        except (ServerFailure, TimeoutError) as exc:
            reason = str(exc) if isinstance(exc, ServerFailure) else "it did not answer in time"
            raise unavailable(reason) from None
        return McpTarget(server_url, None, info.name[:DISPLAY_NAME_MAX_LENGTH] or None, [])

    async def _registration(
        self, organization_id: str, server_url: str, metadata: dict[str, object], endpoint: str
    ) -> McpClientRegistration:
        try:
            return await McpRegistrations(self.session, self.runtime).for_server(
                organization_id,
                server_url,
                dict(metadata),
                registration_endpoint=endpoint,
                scope=None,
            )
        except DestinationNotAllowed as exc:
            raise refused(f"its authorization server's registration endpoint: {exc}") from None
        except ProviderRejected as exc:
            raise ProviderError(
                f"The MCP server's authorization server refused to register this service as a "
                f"client ({exc.error}).",
                details={"error": exc.error},
            ) from None
        except ProviderUnreachable:
            raise unavailable("its authorization server did not answer the registration") from None
        except ProviderBadAnswer as exc:
            raise ProviderError(
                f"The MCP server's authorization server answered the registration wrongly: {exc}."
            ) from None

    @staticmethod
    def _scopes(
        challenge: str | None, resource: rfc9728.ProtectedResource, metadata: dict[str, object]
    ) -> list[str]:
        """The scopes the challenge names, else those the server's metadata lists (the MCP
        spec's order), and the OpenID ones its authorization server offers."""
        named = rfc9728.challenge_params(challenge).get("scope")
        scopes = named.split() if named else list(resource.scopes_supported)
        offered = metadata.get("scopes_supported")
        for scope in OPENID_SCOPES:
            if isinstance(offered, list) and scope in offered and scope not in scopes:
                scopes.append(scope)
        return scopes
