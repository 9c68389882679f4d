"""Passphrase encryption of an export: scrypt-derived key, AES-256-GCM, a versioned header.

An export holds every token of an organization in clear once opened, so it is never written
without this envelope. Layout (all integers one byte)::

    magic "PCONNEXP" | version 1 | log2(N) | r | p | salt (16) | nonce (12) | ciphertext + tag

The whole header is the GCM associated data: changing the cost parameters, salt or version makes
the file fail to open rather than be read differently. The scrypt cost travels in the header so
it can be raised later without a new version; the reader bounds it, so a crafted file cannot ask
for gigabytes of memory.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from personal_connectors.portability.errors import EnvelopeError

MAGIC = b"PCONNEXP"
VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
_PARAMS = struct.Struct("!BBBB")  # version, log2(N), r, p
HEADER_BYTES = len(MAGIC) + _PARAMS.size + SALT_BYTES + NONCE_BYTES
# OWASP's recommended scrypt cost (N=2^17, r=8, p=1): about 0.35 s and 128 MiB per derivation.
DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P = 17, 8, 1
MIN_PASSPHRASE_CHARS = 12


@dataclass(frozen=True)
class ScryptCost:
    log2_n: int = DEFAULT_LOG2_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def check(self) -> None:
        # Below 2^14 the file would be cheap to brute-force; above 2^20 (1 GiB at r=8) a crafted
        # header could exhaust the importer's memory.
        if not (14 <= self.log2_n <= 20 and 1 <= self.r <= 16 and 1 <= self.p <= 4):
            raise EnvelopeError("the export's key-derivation parameters are out of range")

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        self.check()
        kdf = Scrypt(salt=salt, length=KEY_BYTES, n=2**self.log2_n, r=self.r, p=self.p)
        return kdf.derive(passphrase.encode())


def is_sealed(head: bytes) -> bool:
    """Whether bytes (at least the first eight of a file) start an encrypted export."""
    return head[: len(MAGIC)] == MAGIC


def is_sealed_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return is_sealed(handle.read(len(MAGIC)))


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to protect every token of an organization."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise EnvelopeError(
            f"the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters long"
        )


def seal(plaintext: bytes, passphrase: str, cost: ScryptCost | None = None) -> bytes:
    check_passphrase(passphrase)
    cost = cost or ScryptCost()
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = MAGIC + _PARAMS.pack(VERSION, cost.log2_n, cost.r, cost.p) + salt + nonce
    key = cost.derive(passphrase, salt)
    return header + AESGCM(key).encrypt(nonce, plaintext, header)


def open_sealed(blob: bytes, passphrase: str) -> bytes:
    if not is_sealed(blob):
        raise EnvelopeError("not an encrypted export (unknown header)")
    if len(blob) < HEADER_BYTES + 16:
        raise EnvelopeError("the encrypted export is truncated")
    version, log2_n, r, p = _PARAMS.unpack_from(blob, len(MAGIC))
    if version != VERSION:
        raise EnvelopeError(f"unsupported export version {version} (this service reads 1)")
    salt_at = len(MAGIC) + _PARAMS.size
    salt = blob[salt_at : salt_at + SALT_BYTES]
    nonce = blob[salt_at + SALT_BYTES : HEADER_BYTES]
    key = ScryptCost(log2_n, r, p).derive(passphrase, salt)
    try:
        return AESGCM(key).decrypt(nonce, blob[HEADER_BYTES:], blob[:HEADER_BYTES])
    except InvalidTag:
        raise EnvelopeError("wrong passphrase, or the file was altered") from None
