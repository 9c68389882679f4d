"""AES-256-GCM sealing: fresh nonces, bound to row and field, readable after key rotation."""

from __future__ import annotations

import base64
import os

import pytest

from personal_connectors.crypto.aead import DecryptionError, Sealer, associated_data
from personal_connectors.crypto.keyring import KeyConfigurationError, KeyRing, parse_keys


def key() -> bytes:
    return os.urandom(32)


def test_sealing_round_trips_with_a_fresh_nonce() -> None:
    sealer = Sealer(KeyRing((key(),)))
    aad = associated_data("connections", "conn_1", "access_token")
    first, second = sealer.seal("token-value", aad), sealer.seal("token-value", aad)
    assert first != second and first[:12] != second[:12]
    assert b"token-value" not in first
    assert sealer.open(sealer.key_id, first, aad) == "token-value"


def test_a_ciphertext_moved_to_another_row_or_field_does_not_open() -> None:
    sealer = Sealer(KeyRing((key(),)))
    blob = sealer.seal("secret", associated_data("connections", "conn_1", "access_token"))
    for aad in (
        associated_data("connections", "conn_2", "access_token"),
        associated_data("connections", "conn_1", "refresh_token"),
    ):
        with pytest.raises(DecryptionError):
            sealer.open(sealer.key_id, blob, aad)


def test_old_keys_still_decrypt_after_rotation() -> None:
    old, new = key(), key()
    aad = associated_data("t", "r", "f")
    before = Sealer(KeyRing((old,)))
    blob = before.seal("v", aad)
    after = Sealer(KeyRing((new, old)))
    assert after.key_id != before.key_id
    assert after.open(before.key_id, blob, aad) == "v"
    with pytest.raises(KeyConfigurationError):
        Sealer(KeyRing((new,))).open(before.key_id, blob, aad)


def test_keys_are_parsed_from_base64_and_checked() -> None:
    raw = key()
    ring = parse_keys(
        f"{base64.b64encode(raw).decode()}, {base64.urlsafe_b64encode(key()).decode()}"
    )
    assert ring.by_id(ring.current_id) == raw and len(ring.keys) == 2
    with pytest.raises(KeyConfigurationError, match="#1"):
        parse_keys(base64.b64encode(b"short").decode())
