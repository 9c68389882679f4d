"""Sealing and opening a connection's tokens.

Each token is bound to its row and its field by the associated data, so an access token cannot
be opened as a refresh token, nor one connection's token as another's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.models import Connection
from personal_connectors.oauth.client import TokenGrant
from personal_connectors.tokens.lifetime import background_due_at
from personal_connectors.tokens.records import ConnectionLike

TABLE = "connections"


@dataclass(frozen=True)
class TokenVault:
    sealer: Sealer

    def _aad(self, connection_id: str, field: str) -> bytes:
        return associated_data(TABLE, connection_id, field)

    def sealed(
        self, connection: Connection, grant: TokenGrant, *, issued_at: datetime | None = None
    ) -> dict[str, Any]:
        """The column values that store a grant's tokens, for an ORM write or a CAS update.

        The one place the old refresh token is kept when the grant carries none (providers that
        do not rotate, re-authorizations that send none). ``issued_at``: when the provider
        issued it, if known (tokens.lifetime). A new grant ends any doubt about a rotation.
        """
        refresh_token = grant.refresh_token
        if refresh_token is None and connection.refresh_token_ct is not None:
            refresh_token = self.refresh_token(connection)
        return {
            "key_id": self.sealer.key_id,
            "access_token_ct": self.sealer.seal(
                grant.access_token, self._aad(connection.id, "access_token")
            ),
            "refresh_token_ct": None
            if refresh_token is None
            else self.sealer.seal(refresh_token, self._aad(connection.id, "refresh_token")),
            "token_type": grant.token_type,
            "expires_at": grant.expires_at,
            "token_issued_at": issued_at,
            "refresh_due_at": background_due_at(issued_at, grant.expires_at),
            "rotation_uncertain_since": None,
        }

    def store(self, connection: Connection, grant: TokenGrant) -> None:
        """Write a grant's tokens onto a connection being saved."""
        for column, value in self.sealed(connection, grant).items():
            setattr(connection, column, value)

    def access_token(self, connection: ConnectionLike) -> str | None:
        if connection.access_token_ct is None:
            return None
        return self.sealer.open(
            connection.key_id, connection.access_token_ct, self._aad(connection.id, "access_token")
        )

    def refresh_token(self, connection: Connection) -> str | None:
        if connection.refresh_token_ct is None:
            return None
        return self.sealer.open(
            connection.key_id,
            connection.refresh_token_ct,
            self._aad(connection.id, "refresh_token"),
        )

    @staticmethod
    def wipe(connection: Connection) -> None:
        connection.access_token_ct = None
        connection.refresh_token_ct = None
