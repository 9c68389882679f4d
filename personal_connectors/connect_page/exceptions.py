"""Failures of the connect page, in the SPEC §2 vocabulary where they are JSON answers."""

from __future__ import annotations

from personal_connectors.exceptions import APIError


class ConnectSessionInvalid(APIError):
    """No connect session in this browser, or it expired: the page explains it in HTML."""

    status, code, type = 401, "CONNECT_SESSION_INVALID", "authentication_error"
    message = "This connect link has expired. Ask the app for a new one."


class CrossSiteRequest(APIError):
    """A state-changing request that did not come from the connect page itself."""

    status, code, type = 403, "CSRF_CHECK_FAILED", "authorization_error"
    message = "This request did not come from the connect page."


class ConnectorNotAllowed(APIError):
    status, code, type = 403, "CONNECTOR_NOT_ALLOWED", "authorization_error"
    message = "This connect link does not offer that connector."
