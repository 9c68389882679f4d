"""How a connection's credentials go on a call to the provider's API: an entry's ``api_auth``.

One reading of ``ApiAuth`` for every caller (the proxy, check calls): its header, query and
HTTP Basic templates filled from the connection's values (``{access_token}`` for OAuth
connections, the credentials fields for the others). No ``api_auth``: ``Authorization: Bearer
{access_token}``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from personal_connectors.providers.schema import TEMPLATE_VARIABLE, ApiAuth


class MissingCredentialValue(ValueError):
    """A template names a value the connection does not have (names it, never a value)."""


@dataclass(frozen=True)
class AppliedAuth:
    """What a call carries: headers to set and query parameters to add (secrets: no repr)."""

    headers: dict[str, str] = field(default_factory=dict, repr=False)
    query: dict[str, str] = field(default_factory=dict, repr=False)


def _filled(template: str, values: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            raise MissingCredentialValue(f"api_auth uses {{{match.group(1)}}}, which is unset")
        return value

    return TEMPLATE_VARIABLE.sub(substitute, template)


def apply_api_auth(api_auth: ApiAuth | None, values: Mapping[str, str]) -> AppliedAuth:
    """The headers and query parameters that authenticate a call with ``values``."""
    if api_auth is None:
        return AppliedAuth(headers={"Authorization": f"Bearer {_filled('{access_token}', values)}"})
    headers = {name: _filled(template, values) for name, template in api_auth.headers.items()}
    query = {name: _filled(template, values) for name, template in api_auth.query.items()}
    if api_auth.basic is not None:
        pair = f"{_filled(api_auth.basic.username, values)}:"
        pair += _filled(api_auth.basic.password, values)
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return AppliedAuth(headers, query)
