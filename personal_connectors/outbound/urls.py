"""Which URLs someone other than the operator may give the service to call: the outbound rule
(SPEC §9) as it is checked when such a URL is registered (a webhook receiver, a trusted issuer
and its JWKS). The outbound guard judges the address each call actually connects to as well.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from personal_connectors.exceptions import ValidationFailed
from personal_connectors.outbound.addresses import parse_address, refusal

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WEB = frozenset({"http", "https"})
# What inet_aton also reads as an address (``2130706433``, ``127.1``, ``0x7f.1``): not a name.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*\.?$")


def check_url(url: str, *, allow_internal: bool, field: str = "url") -> str:
    """https only, to no internal address literal; the URL as it will be stored.

    Credentials and fragments are refused: the URL is listed back to every admin and logged
    nowhere, so it must not carry a password, and a fragment never reaches the server. A name
    is not resolved here (its answer can change): the outbound guard judges the address each
    call connects to. With ``allow_internal`` (``Settings.loopback_allowed``,
    development) a server on this machine may be named, over plain http too; nothing else.
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise ValidationFailed.for_fields(f"The {field} is not a valid URL.", field) from exc
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise ValidationFailed.for_fields(
            f"The {field} needs a host, and neither credentials nor a fragment.", field
        )
    if allow_internal and host in LOOPBACK_HOSTS and parts.scheme in WEB:
        return parts.geturl()
    reason = _literal_refusal(host)
    if reason is not None:
        # The service calls from inside the deployment: nobody may aim it at the metadata
        # service or the database host (SSRF).
        raise ValidationFailed.for_fields(
            f"The {field} must not point at an internal address ({reason}).", field
        )
    if parts.scheme != "https":
        raise ValidationFailed.for_fields(f"The {field} must be https.", field)
    return parts.geturl()


def _literal_refusal(host: str) -> str | None:
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    address = parse_address(host)
    if address is not None:
        return refusal(address)
    return "a numeric shorthand address" if _NUMERIC_HOST.match(host) else None
