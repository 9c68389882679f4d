"""Turning a catalog entry, a connection's parameters and an app's credentials into a client.

The one place where discovery failures become API errors, so flows and connections agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from personal_connectors.exceptions import ProviderError, ProviderUnavailable
from personal_connectors.oauth.client import ClientCredentials, OAuthClient
from personal_connectors.oauth.endpoints import ProviderEndpoints, resolve_endpoints
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderFailure,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.oauth.rfc8414 import DiscoveryError, MetadataUnavailable
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime


async def endpoints_for(
    runtime: Runtime, entry: ProviderEntry, params: Mapping[str, str]
) -> ProviderEndpoints:
    try:
        return await resolve_endpoints(
            entry,
            params,
            runtime.http,
            runtime.metadata,
            allow_http=runtime.settings.loopback_allowed,
        )
    except MetadataUnavailable:
        raise ProviderUnavailable(
            f"The {entry.display_name} metadata document could not be fetched.",
            headers={"Retry-After": "30"},
        ) from None
    except DiscoveryError as exc:
        raise ProviderError(f"The {entry.display_name} metadata was refused: {exc}.") from None


async def client_for(
    runtime: Runtime,
    entry: ProviderEntry,
    params: Mapping[str, str],
    credentials: ClientCredentials,
    *,
    call_seconds: float | None = None,
) -> OAuthClient:
    """``call_seconds``: the calls' own time limit (a refresh's request lifetime), else the
    provider timeout."""
    return OAuthClient(
        entry,
        await endpoints_for(runtime, entry, params),
        credentials,
        redirect_uri=runtime.settings.redirect_uri,
        timeout=call_seconds or runtime.settings.provider_timeout_seconds,
        http=runtime.http,
    )


@asynccontextmanager
async def provider_call(request: str) -> AsyncIterator[None]:
    """Report a failed front-channel set-up call (PAR, device authorization) as an API error.

    ``request`` names the call in the message, e.g. "pushed authorization request".
    """
    try:
        yield
    except ProviderRejected as exc:
        raise ProviderError(
            f"The provider refused the {request}: {exc.error}.", details={"error": exc.error}
        ) from None
    except DestinationNotAllowed as exc:
        raise ProviderError(f"The {request} was not sent: {exc}.") from None
    except ProviderUnreachable:
        raise ProviderUnavailable(
            f"The provider could not be reached for the {request}.",
            headers={"Retry-After": "30"},
        ) from None
    except ProviderFailure as exc:
        raise ProviderError(f"The answer to the {request} was unusable: {exc}.") from None
