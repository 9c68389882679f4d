"""OAuth 2.0 Pushed Authorization Requests (RFC 9126), the client's side.

Instead of carrying scope, state, redirect URI and PKCE challenge through the user's browser,
the client POSTs them, authenticated, to the provider (§2.1) and sends the browser only a
``request_uri`` reference (§4). The parameters themselves are built by Authlib exactly as for
a plain authorization URL; this module turns that URL into the pushed request and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.common.urls import add_params_to_uri

from personal_connectors.oauth.errors import ProviderBadAnswer


@dataclass(frozen=True)
class PushedRequest:
    """The §2.2 answer: a one-time reference to the pushed parameters and its lifetime."""

    request_uri: str
    expires_in: int


def pushed_parameters(authorization_url: str, *, client_auth_method: str) -> dict[str, str]:
    """The parameters of a built authorization URL, as the body of the pushed request.

    With ``client_secret_post`` the client authentication itself adds ``client_id`` to the
    body; sending it twice would be refused (§2.1 forbids repeated parameters).
    """
    params = dict(parse_qsl(urlsplit(authorization_url).query, keep_blank_values=True))
    if client_auth_method == "client_secret_post":
        params.pop("client_id", None)
    return params


def parse_pushed_response(body: Any) -> PushedRequest:
    if not isinstance(body, dict):
        raise ProviderBadAnswer("the pushed authorization answer is not a JSON object")
    request_uri = body.get("request_uri")
    expires_in = body.get("expires_in")
    if not isinstance(request_uri, str) or not request_uri:
        raise ProviderBadAnswer("the pushed authorization answer has no request_uri")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise ProviderBadAnswer("the pushed authorization answer has no expires_in")
    return PushedRequest(request_uri, expires_in)


def authorization_url(authorization_endpoint: str, client_id: str, request_uri: str) -> str:
    """§4: the browser carries only ``client_id`` and ``request_uri``."""
    return str(
        add_params_to_uri(
            authorization_endpoint, [("client_id", client_id), ("request_uri", request_uri)]
        )
    )
