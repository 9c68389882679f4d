"""A request to the gateway as its route hands it to the SDK's handlers."""

from __future__ import annotations

from dataclasses import dataclass

from personal_connectors.identity.service import OrgAccess
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.records import ConnectionLike

# Where a request carries its ``GatewayCall`` from the route to the SDK's handlers.
CALL_STATE_KEY = "connectors_mcp_call"


@dataclass(frozen=True)
class GatewayCall:
    """Who asks, and through which endpoint (``connection``: the one of ``/{id}/mcp`` as the
    route read it for this request, so it is not read twice: the token lookup's record, or the
    row for a ``pct_`` token)."""

    runtime: Runtime
    access: OrgAccess
    connection: ConnectionLike | None = None
