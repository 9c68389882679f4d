"""Which IP addresses an outbound call may connect to: globally routable unicast only.

An address is judged with what it embeds: an IPv4-mapped (``::ffff:127.0.0.1``), NAT64
(``64:ff9b::a9fe:a9fe``) or 6to4 (``2002:7f00:1::``) address reaches the IPv4 address inside
it, so that address is judged too. The deprecated IPv4-compatible form (``::127.0.0.1``) is
refused outright: no public host is reached that way.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def parse_address(text: str) -> IPAddress | None:
    """An address literal as a URL or a resolver gives it (brackets and zone id allowed)."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def refusal(address: IPAddress) -> str | None:
    """Why a call must not connect to ``address``, as "a loopback address" (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _embedded(address.ipv4_mapped, "an IPv4-mapped")
        if address in _IPV4_COMPATIBLE and not (address.is_unspecified or address.is_loopback):
            return "an IPv4-compatible address"
        if address in _IPV4_TRANSLATED or address in _NAT64:
            return _embedded(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "a NAT64")
        if address.sixtofour is not None:
            return _embedded(address.sixtofour, "a 6to4")
        if address.teredo is not None:
            return "a Teredo address"
    return _plain(address)


def _embedded(inner: ipaddress.IPv4Address, form: str) -> str | None:
    reason = _plain(inner)
    return None if reason is None else f"{form} address embedding {reason}"


def _plain(address: IPAddress) -> str | None:
    for kind, applies in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-global", not address.is_global),
    ):
        if applies:
            return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"
    return None
