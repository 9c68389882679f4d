"""Why a flow failed, in the words the callback and complete-oauth report."""

from __future__ import annotations

import re

from personal_connectors.exceptions import APIError

# An OAuth error code we may echo into a page or a URL; anything else is replaced.
SAFE_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class AuthorizationFailed(APIError):
    """A failed flow reported to a JSON caller of the callback."""

    status, code, type = 400, "AUTHORIZATION_FAILED", "client_error"
    message = "The account could not be connected."


class FlowFailed(Exception):
    """The flow ended without a connection; ``code`` is an OAuth-style error code."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code if SAFE_ERROR_CODE.match(code) else "provider_error"
        self.description = description[:300]
        super().__init__(self.code)
