"""Sealing and opening a connection's tokens and credentials (SPEC §10).

Each secret is bound to its row and its field by the associated data, so an access token cannot
be opened as a refresh token, nor one connection's token as another's. The credentials fields of
a connection are one sealed JSON object under the row's ``key_id``, like its tokens: every
write of the tokens seals them again under the current key, so the row keeps one key id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.models import Connection, utcnow
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
        credentials = self.credentials(connection)
        return {
            "credentials_ct": None
            if credentials is None
            else self._seal_credentials(connection.id, credentials),
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

    def credentials(self, connection: Connection) -> dict[str, str] | None:
        """A credentials-mode connection's fields; None for an OAuth connection."""
        if connection.credentials_ct is None:
            return None
        return self.open_credentials(connection.id, connection.key_id, connection.credentials_ct)

    def open_credentials(self, connection_id: str, key_id: str, blob: bytes) -> dict[str, str]:
        opened: dict[str, str] = json.loads(
            self.sealer.open(key_id, blob, self._aad(connection_id, "credentials"))
        )
        return opened

    def _seal_credentials(self, connection_id: str, values: Mapping[str, str]) -> bytes:
        return self.sealer.seal(json.dumps(dict(values)), self._aad(connection_id, "credentials"))

    def store_credentials(
        self, connection: Connection, values: Mapping[str, str], grant: TokenGrant | None
    ) -> None:
        """Write a credentials-mode connection's fields, and its minted token when the mode
        mints one (else no token at all), all under the current key."""
        connection.refresh_token_ct = None  # a minted token is minted again, not refreshed
        connection.key_id = self.sealer.key_id
        connection.credentials_ct = self._seal_credentials(connection.id, values)
        connection.credential_fields = sorted(values)
        if grant is None:
            connection.access_token_ct = None
            connection.expires_at = connection.token_issued_at = connection.refresh_due_at = None
            return
        for column, value in self.sealed(connection, grant, issued_at=utcnow()).items():
            setattr(connection, column, value)

    @staticmethod
    def wipe(connection: Connection) -> None:
        connection.access_token_ct = None
        connection.refresh_token_ct = None
        connection.credentials_ct = None
