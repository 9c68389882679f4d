"""The outbound address classifier: only globally routable unicast addresses may be reached,
whatever form the address is written in or embedded in."""

from __future__ import annotations

import pytest

from personal_connectors.outbound.addresses import parse_address, refusal

REFUSED = {
    "127.0.0.1": "a loopback address",
    "127.255.0.9": "a loopback address",
    "::1": "a loopback address",
    "10.0.0.7": "a private address",
    "172.16.4.4": "a private address",
    "192.168.1.20": "a private address",
    "fd00::5": "a private address",
    "169.254.169.254": "a link-local address",  # the cloud metadata service
    "fe80::1": "a link-local address",
    "224.0.0.1": "a multicast address",
    "239.255.255.250": "a multicast address",
    "ff02::1": "a multicast address",
    "0.0.0.0": "an unspecified address",
    "::": "an unspecified address",
    "240.0.0.1": "a reserved address",
    "100.64.0.1": "a non-global address",  # carrier-grade NAT
    "192.0.2.1": "a private address",  # documentation
    # Internal IPv4 addresses inside IPv6 forms.
    "::ffff:127.0.0.1": "an IPv4-mapped address embedding a loopback address",
    "::ffff:169.254.169.254": "an IPv4-mapped address embedding a link-local address",
    "64:ff9b::a9fe:a9fe": "a NAT64 address embedding a link-local address",
    "64:ff9b::7f00:1": "a NAT64 address embedding a loopback address",
    "2002:7f00:1::": "a 6to4 address embedding a loopback address",
    "2002:a00:7::1": "a 6to4 address embedding a private address",
    "::127.0.0.1": "an IPv4-compatible address",
    "::8.8.8.8": "an IPv4-compatible address",
}

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "2606:2800:220:1:248:1893:25c8:1946",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34: how IPv6-only networks reach IPv4 hosts
    "2002:5db8:d822::1",
]


@pytest.mark.parametrize(("text", "reason"), sorted(REFUSED.items()))
def test_internal_addresses_are_refused_with_their_kind(text: str, reason: str) -> None:
    address = parse_address(text)
    assert address is not None
    assert refusal(address) == reason


@pytest.mark.parametrize("text", ALLOWED)
def test_public_unicast_addresses_are_allowed(text: str) -> None:
    address = parse_address(text)
    assert address is not None
    assert refusal(address) is None


def test_literals_are_read_as_urls_and_resolvers_write_them() -> None:
    assert str(parse_address("[::127.0.0.1]")) == "::7f00:1"
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert parse_address("hooks.example.com") is None
    assert parse_address("2130706433") is None  # a shorthand is a name to the resolver
