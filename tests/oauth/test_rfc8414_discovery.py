"""RFC 8414 / OpenID discovery: the metadata's issuer must be the one the URL names."""

from __future__ import annotations

import pytest

from personal_connectors.oauth.rfc8414 import DiscoveryError, expected_issuer, verify_metadata


def test_expected_issuer_for_both_well_known_forms() -> None:
    assert (
        expected_issuer("https://idp.example/.well-known/openid-configuration")
        == "https://idp.example"
    )
    assert (
        expected_issuer("https://idp.example/tenant/.well-known/openid-configuration")
        == "https://idp.example/tenant"
    )
    assert (
        expected_issuer("https://idp.example/.well-known/oauth-authorization-server/tenant")
        == "https://idp.example/tenant"
    )
    with pytest.raises(DiscoveryError):
        expected_issuer("https://idp.example/metadata.json")


def test_a_foreign_issuer_is_refused() -> None:
    document = {
        "issuer": "https://attacker.example",
        "authorization_endpoint": "https://a/x",
        "token_endpoint": "https://a/t",
    }
    with pytest.raises(DiscoveryError, match="issuer"):
        verify_metadata("https://idp.example/.well-known/openid-configuration", document, None)
    document["issuer"] = "https://idp.example"
    assert (
        verify_metadata("https://idp.example/.well-known/openid-configuration", document, None)
        is document
    )
    with pytest.raises(DiscoveryError, match="catalog"):
        verify_metadata(
            "https://idp.example/.well-known/openid-configuration",
            document,
            "https://other.example",
        )
