"""The lifecycle events of a connection, recorded in its audit trail."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    CREATED = "connection.created"
    REAUTHORIZED = "connection.reauthorized"
    REFRESHED = "connection.refreshed"
    REFRESH_FAILED = "connection.refresh_failed"
    RECOVERED = "connection.recovered"
    # A refresh whose answer was lost rotated the refresh token: the grant is gone.
    ROTATION_LOST = "connection.rotation_lost"
    # The platform changed the connection's tags or metadata (SPEC §8, PATCH /{id}).
    UPDATED = "connection.updated"
    DISABLED = "connection.disabled"
    ENABLED = "connection.enabled"
    REVOKED = "connection.revoked"
    REVOCATION_FAILED = "connection.revocation_failed"
    DELETED = "connection.deleted"
    TOKEN_ISSUED = "connection.token_issued"
