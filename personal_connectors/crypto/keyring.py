"""The set of encryption keys: the first encrypts, all decrypt, so keys can be rotated.

Keys come from ``CONNECTORS_ENCRYPTION_KEYS`` (comma-separated base64 of 32 bytes) or, on the
embedded default, from a key file generated into the data folder on first start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from personal_connectors.config import Settings

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "encryption.keys"
KEY_BYTES = 32


class KeyConfigurationError(RuntimeError):
    """The encryption keys are missing or malformed; the service must not start."""


def key_id_of(key: bytes) -> str:
    """A short, stable, non-secret name for a key, stored beside every ciphertext."""
    return hashlib.sha256(b"personal-connectors key id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyConfigurationError("at least one encryption key is required")
        for key in self.keys:
            if len(key) != KEY_BYTES:
                raise KeyConfigurationError("every encryption key must be 32 bytes (AES-256)")

    @cached_property
    def ids(self) -> dict[str, bytes]:
        """Each key by its id, computed once (an id is a hash of its key)."""
        return {key_id_of(key): key for key in self.keys}

    @property
    def current_id(self) -> str:
        return next(iter(self.ids))

    def by_id(self, key_id: str) -> bytes:
        key = self.ids.get(key_id)
        if key is None:
            raise KeyConfigurationError(f"no configured encryption key has id {key_id}")
        return key


def parse_keys(text: str) -> KeyRing:
    keys: list[bytes] = []
    for position, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        try:
            key = base64.b64decode(item + "=" * (-len(item) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise KeyConfigurationError(f"encryption key #{position} is not base64") from exc
        if len(key) != KEY_BYTES:
            raise KeyConfigurationError(
                f"encryption key #{position} decodes to {len(key)} bytes, expected {KEY_BYTES}"
            )
        keys.append(key)
    return KeyRing(tuple(keys))


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def load_keyring(settings: Settings, *, create: bool | None = None) -> KeyRing:
    """Load the keys; on the embedded default, generate a key file the first time.

    On a shared database (PostgreSQL) a generated key would differ per instance and make other
    instances' secrets unreadable, so there the key must be configured (or the file provided).
    """
    if settings.encryption_keys:
        return parse_keys(settings.encryption_keys)
    key_file = settings.data_dir / KEY_FILE_NAME
    if key_file.exists():
        return parse_keys(key_file.read_text())
    if create is None:
        create = settings.is_embedded
    if not create:
        raise KeyConfigurationError(
            "CONNECTORS_ENCRYPTION_KEYS is not set and no key file exists in the data folder; "
            "generate one with `openssl rand -base64 32`"
        )
    _write_key_file(key_file, generate_key())
    logger.warning(
        "generated a new encryption key in %s; back it up: without it stored tokens are unreadable",
        key_file,
    )
    return parse_keys(key_file.read_text())


def _write_key_file(path: Path, key: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data folder: private
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
