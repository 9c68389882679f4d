"""AES-256-GCM sealing of secrets stored in the database.

Each value gets a fresh 96-bit nonce; the associated data names the row and the field, so a
ciphertext copied into another row or column fails to open instead of leaking into the wrong place.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from personal_connectors.crypto.keyring import KeyRing

NONCE_BYTES = 12


class DecryptionError(RuntimeError):
    """A stored secret could not be opened (wrong key, tampered row, or moved ciphertext)."""


def associated_data(table: str, row_id: str, field: str) -> bytes:
    return f"{table}:{row_id}:{field}".encode()


@dataclass(frozen=True)
class Sealer:
    """Seals and opens values with a keyring; the key id travels with the row."""

    keyring: KeyRing
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def key_id(self) -> str:
        return self.keyring.current_id

    def _cipher(self, key_id: str) -> AESGCM:
        # One AESGCM per key, kept: building it costs about as much as opening a token.
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = AESGCM(self.keyring.by_id(key_id))
        return cipher

    def seal(self, plaintext: str, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._cipher(self.key_id).encrypt(nonce, plaintext.encode(), aad)

    def open(self, key_id: str, blob: bytes, aad: bytes) -> str:
        cipher = self._cipher(key_id)
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode()
        except InvalidTag as exc:
            raise DecryptionError("stored secret failed authentication") from exc
