"""AES-256-GCM sealing of secrets stored in the database.

Each value gets a fresh 96-bit nonce; the associated data names the row and the field, so a
ciphertext copied into another row or column fails to open instead of leaking into the wrong place.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

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

    @property
    def key_id(self) -> str:
        return self.keyring.current_id

    def seal(self, plaintext: str, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.keyring.current).encrypt(nonce, plaintext.encode(), aad)

    def open(self, key_id: str, blob: bytes, aad: bytes) -> str:
        key = self.keyring.by_id(key_id)
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode()
        except InvalidTag as exc:
            raise DecryptionError("stored secret failed authentication") from exc
