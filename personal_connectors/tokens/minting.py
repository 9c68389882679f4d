"""Minting an access token with a connection's own credentials (SPEC §10): the
``oauth2_client_credentials`` grant with the stored client id and secret, or an RFC 7523
assertion signed by the stored private key. ``POST /credentials`` mints the first token; the
refresh machinery (``tokens.refresh``) mints again where others refresh."""

from __future__ import annotations

from collections.abc import Mapping

from personal_connectors.apps.gateway import client_for
from personal_connectors.oauth import rfc7523
from personal_connectors.oauth.client import ClientCredentials, TokenGrant
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.providers.templating import fill
from personal_connectors.runtime import Runtime


async def mint(
    runtime: Runtime,
    entry: ProviderEntry,
    params: Mapping[str, str],
    values: Mapping[str, str],
    *,
    call_seconds: float | None = None,
) -> TokenGrant:
    """A fresh token for ``values`` (the connection's credentials fields). Failures are the
    ``oauth.errors`` classes, as for any token request; ``rfc7523.InvalidPrivateKey`` when
    the key does not load (checked before anything is sent)."""
    declared = entry.mint
    assert declared is not None  # (the catalog requires it of minting entries)
    scopes = list(entry.default_scopes)
    if declared.assertion is None:
        assert declared.client_id is not None and declared.client_secret is not None
        client = await client_for(
            runtime,
            entry,
            params,
            ClientCredentials(
                fill(declared.client_id, values), fill(declared.client_secret, values)
            ),
            call_seconds=call_seconds,
        )
        return await client.client_credentials_grant(scopes)
    client = await client_for(
        runtime, entry, params, ClientCredentials("", ""), call_seconds=call_seconds
    )
    signed = rfc7523.assertion(
        declared.assertion,
        values,
        token_url=client.endpoints.token_url,
        scopes=scopes,
        scope_separator=entry.scope_separator,
    )
    return await client.jwt_bearer_grant(
        signed, scopes, scope_param=not declared.assertion.scope_claim
    )
