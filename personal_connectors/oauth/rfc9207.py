"""RFC 9207: the ``iss`` parameter of the authorization response, our mix-up defence.

A broker talks to many authorization servers, so a code must only be exchanged with the server
that issued it. When the provider sends ``iss`` or advertises that it does, it must match.
"""

from __future__ import annotations


class IssuerMismatch(ValueError):
    """The authorization response did not come from the expected authorization server."""


def check_issuer(received: str | None, expected: str | None, advertised: bool) -> None:
    if received is None:
        if advertised:
            raise IssuerMismatch("the provider advertises iss but the response has none")
        return
    if expected is None:
        # Nothing to compare with: the catalog entry names no issuer and has no metadata.
        return
    if received != expected:
        raise IssuerMismatch("iss does not match the provider's issuer")
