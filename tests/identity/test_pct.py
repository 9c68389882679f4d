"""``pct_`` tokens: they say which end user of which organization they stand for to this
service only, cannot be altered or forged, and end after five minutes or when the key that
sealed them is no longer configured."""

from __future__ import annotations

import os
import time

import pytest

from personal_connectors.crypto.aead import Sealer
from personal_connectors.crypto.keyring import KeyRing
from personal_connectors.identity import pct


def sealer(*keys: bytes) -> Sealer:
    return Sealer(KeyRing(keys or (os.urandom(32),)))


def test_a_token_reads_back_what_it_was_minted_for_and_hides_it() -> None:
    keys = sealer()
    token, seconds = pct.mint(keys, "org_1", "user@example.test", "key_1")
    assert token.startswith("pct_") and seconds == 300
    assert "user@example.test" not in token and "org_1" not in token
    found = pct.read(keys, token)
    assert (found.organization_id, found.end_user_id, found.api_key_id) == (
        "org_1",
        "user@example.test",
        "key_1",
    )
    assert time.time() + 290 < found.expires_at <= time.time() + 300


def test_an_altered_or_foreign_token_is_refused() -> None:
    keys = sealer()
    token, _ = pct.mint(keys, "org_1", "alice", "key_1")
    head, _, body = token.rpartition(".")
    altered = f"{head}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}"
    for bad in (
        altered,
        "pct_",
        "pct_x.y",
        token.replace("pct_", "pct_0"),
        pct.mint(sealer(), "org_1", "alice", "key_1")[0],
    ):
        with pytest.raises(pct.InvalidExchangedToken):
            pct.read(keys, bad)


def test_a_token_is_refused_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = sealer()
    token, _ = pct.mint(keys, "org_1", "alice", "key_1")
    later = time.time() + 301
    monkeypatch.setattr(pct.time, "time", lambda: later)
    with pytest.raises(pct.InvalidExchangedToken, match="expired"):
        pct.read(keys, token)


def test_tokens_survive_a_key_rotation_while_the_old_key_is_configured() -> None:
    old, new = os.urandom(32), os.urandom(32)
    token, _ = pct.mint(sealer(old), "org_1", "alice", "key_1")
    assert pct.read(sealer(new, old), token).end_user_id == "alice"
    with pytest.raises(pct.InvalidExchangedToken):
        pct.read(sealer(new), token)
