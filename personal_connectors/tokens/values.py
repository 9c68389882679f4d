"""The values a call to a connection's API (or MCP server) fills the entry's ``api_auth`` from.

Here, below every caller (the proxy, the MCP client), so the rule is written once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import OAUTH2_MODE, Connection
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.records import ConnectionLike
from personal_connectors.tokens.service import KEPT_MODES, TokenService
from personal_connectors.tokens.vault import TokenVault


async def credential_values(
    session: AsyncSession | None,
    runtime: Runtime,
    connection: ConnectionLike,
    *,
    force_refresh: bool = False,
) -> dict[str, str]:
    """Every value a call to ``connection``'s API may use in the entry's ``api_auth`` (or the
    default ``Authorization: Bearer {access_token}``): its decrypted credentials fields (none
    for an OAuth connection) and ``access_token`` where there is one — current, or refreshed
    (minted again, for the minting modes) first when due or when ``force_refresh``, under the
    token route's rules and errors (409 ``REAUTHORIZATION_REQUIRED``, 503 …).

    ``session``: the caller's, whose read transaction ends before any refresh (as
    ``TokenService``'s). Never log or return the result: it is the user's secrets. The fields
    of a minting connection (client secret, private key) are included, for entries whose
    ``api_auth`` names them; the proxy sends only what ``api_auth`` names.

    ``connection``: the row, or for an OAuth connection (which has no fields) the token
    lookup's record.
    """
    if isinstance(connection, Connection):
        values = TokenVault(runtime.sealer).credentials(connection) or {}
    elif connection.auth_mode == OAUTH2_MODE:
        values = {}
    else:
        raise TypeError("a credentials connection's fields are read from its row")
    if connection.auth_mode in KEPT_MODES:
        return values
    token = await TokenService(session, runtime).fresh_token(connection, force=force_refresh)
    return {**values, "access_token": token.access_token}
