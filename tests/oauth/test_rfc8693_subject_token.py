"""A subject token is accepted only when signed with an asymmetric algorithm by a key the
trusted issuer publishes, for the audience the organization named, inside its lifetime; a
rotated signing key is fetched once, and made-up key ids do not make the service hammer the
issuer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from personal_connectors.config import Settings
from personal_connectors.oauth.rfc7517 import KeySetCache
from personal_connectors.oauth.rfc8693 import (
    ExchangeError,
    SubjectToken,
    claimed_issuer,
    verify_subject_token,
)
from personal_connectors.outbound.client import create_client
from tests.support.issuer import TestIssuer


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    test_issuer = TestIssuer()
    yield test_issuer
    test_issuer.close()


def verify(issuer: TestIssuer, token: str, cache: KeySetCache | None = None) -> SubjectToken:
    cache = cache or KeySetCache()

    async def run() -> SubjectToken:
        settings = Settings(_env_file=None, outbound_allow_internal=True)  # type: ignore[call-arg]
        async with create_client(settings) as http:
            return await verify_subject_token(
                token,
                issuer=issuer.issuer,
                audience="platform",
                subject_claim="sub",
                keys_for=lambda kid: cache.get(http, issuer.jwks_uri, kid),
            )

    return asyncio.run(run())


def refused(issuer: TestIssuer, token: str) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        verify(issuer, token)
    assert caught.value.error == "invalid_grant"
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, object], payload: dict[str, object], signature: bytes) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    return f"{head}.{body}.{b64(signature)}"


def claims(issuer: TestIssuer) -> dict[str, object]:
    now = int(time.time())
    return {"iss": issuer.issuer, "sub": "alice", "aud": "platform", "exp": now + 300}


def test_a_valid_token_names_its_subject(issuer: TestIssuer) -> None:
    token = issuer.sign("alice")
    assert claimed_issuer(token) == issuer.issuer
    verified = verify(issuer, token)
    assert (verified.issuer, verified.subject) == (issuer.issuer, "alice")


def test_a_signature_by_another_key_is_refused(issuer: TestIssuer) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # the same key id
    assert "signature" in refused(issuer, issuer.sign("alice", key=stranger)).description


def test_alg_none_is_refused(issuer: TestIssuer) -> None:
    token = forged({"alg": "none", "kid": "k1"}, claims(issuer), b"")
    assert "asymmetric" in refused(issuer, token).description


def test_hs256_signed_with_the_published_public_key_is_refused(issuer: TestIssuer) -> None:
    public_pem = issuer.keys[0].as_pem(private=False)
    header, payload = {"alg": "HS256", "kid": "k1"}, claims(issuer)
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert "asymmetric" in refused(issuer, f"{signing_input}.{b64(signature)}").description


def test_an_expired_token_is_refused_beyond_the_leeway(issuer: TestIssuer) -> None:
    refused(issuer, issuer.sign("alice", lifetime=-61))
    assert verify(issuer, issuer.sign("alice", lifetime=-30)).subject == "alice"  # clock skew


def test_a_token_not_yet_valid_is_refused(issuer: TestIssuer) -> None:
    refused(issuer, issuer.sign("alice", nbf=int(time.time()) + 600))


def test_a_token_for_another_audience_is_refused(issuer: TestIssuer) -> None:
    refused(issuer, issuer.sign("alice", audience="someone-else"))


def test_a_token_from_another_issuer_is_refused(issuer: TestIssuer) -> None:
    refused(issuer, issuer.sign("alice", iss="https://idp.example.test"))


def test_a_token_without_expiry_or_subject_is_refused(issuer: TestIssuer) -> None:
    payload = {"iss": issuer.issuer, "sub": "alice", "aud": "platform"}
    refused(issuer, jwt.encode({"alg": "RS256", "kid": "k1"}, payload, issuer.keys[0]))
    assert "'sub'" in refused(issuer, issuer.sign("")).description


@pytest.mark.parametrize("token", ["", "a.b", "not a jwt at all", "a.b.c", "é.é.é"])
def test_what_is_not_a_jwt_is_refused(issuer: TestIssuer, token: str) -> None:
    refused(issuer, token)


def test_a_rotated_signing_key_is_fetched_once(issuer: TestIssuer) -> None:
    cache = KeySetCache(refetch_after=0.0)
    assert verify(issuer, issuer.sign("alice"), cache).subject == "alice"
    assert issuer.jwks_fetches == 1
    issuer.rotate()
    for _ in range(3):
        assert verify(issuer, issuer.sign("bob"), cache).subject == "bob"
    assert issuer.jwks_fetches == 2  # the new key id fetched the set again, once


def test_made_up_key_ids_do_not_refetch_the_set_again_and_again(issuer: TestIssuer) -> None:
    cache = KeySetCache()  # the default: at most one early fetch per 30 s
    verify(issuer, issuer.sign("alice"), cache)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
    for _ in range(5):
        with pytest.raises(ExchangeError):
            verify(issuer, issuer.sign("mallory", key=stranger), cache)
    assert issuer.jwks_fetches == 1
