"""The service's error vocabulary (SPEC §2). Each error knows its status, code and type.

Domain packages raise these (or their own subclasses in their ``exceptions`` module); the HTTP layer
renders them into the one error envelope. Messages never carry tokens, codes, states or secrets.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from personal_connectors.config import API_PREFIX

# Where a caller finds the connector keys, named in every "unknown connector" answer.
AVAILABLE_CONNECTORS = f"GET {API_PREFIX}/available"


class APIError(Exception):
    status: int = 500
    code: str = "INTERNAL_ERROR"
    type: str = "server_error"
    message: str = "An unexpected error occurred. Please try again later."

    def __init__(
        self,
        system_message: str | None = None,
        *,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.system_message = system_message or self.message
        if message is not None:
            self.message = message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.system_message)


class ValidationFailed(APIError):
    status, code, type = 400, "VALIDATION_ERROR", "validation_error"
    message = "The request contains invalid parameters."

    @classmethod
    def for_fields(cls, system_message: str, *fields: str, **extra: Any) -> ValidationFailed:
        return cls(system_message, details={"fields": list(fields), **extra})


class InvalidStateToken(ValidationFailed):
    """Unknown, expired, used or foreign state: all alike, so none can be told apart."""

    def __init__(self) -> None:
        super().__init__("Invalid or expired state token.")


def unknown_connector(key: str, known: Iterable[str]) -> str:
    """Says that ``key`` names no connector, suggests the closest known key, and where the
    list is: the text of every answer about an unknown connector type."""
    shown = key[:64]
    closest = difflib.get_close_matches(key[:64], list(known), n=1)
    hint = f" Did you mean '{closest[0]}'?" if closest else ""
    return f"Unknown connector type: '{shown}'.{hint} {AVAILABLE_CONNECTORS} lists them."


class UnknownConnectorType(ValidationFailed):
    def __init__(self, key: str, known: Iterable[str], field: str) -> None:
        super().__init__(unknown_connector(key, known), details={"fields": [field]})


class ConnectorNotConfigured(APIError):
    status, code, type = 400, "CONNECTOR_NOT_CONFIGURED", "validation_error"
    message = "This connector is not configured for your organization."

    def __init__(self, app_key: str, missing: str | None = None) -> None:
        """``missing``: what the app lacks, when it exists but is incomplete."""
        super().__init__(
            missing
            or f"No OAuth app is configured for {app_key} in this organization. An organization "
            f"admin sets one with `PUT {API_PREFIX}/apps/{app_key}` (client_id, client_secret); "
            f"the operator sets one for every organization with `connectors apps set {app_key}`."
        )


class AuthenticationRequired(APIError):
    status, code, type = 401, "AUTHENTICATION_REQUIRED", "authentication_error"
    message = "Authentication required. Please provide a valid API key."


class InvalidAPIKey(AuthenticationRequired):
    code = "INVALID_API_KEY"
    message = "Your API key is invalid."


class APIKeyExpired(AuthenticationRequired):
    code = "API_KEY_EXPIRED"
    message = "Your API key has expired."


class APIKeyDeactivated(AuthenticationRequired):
    code = "API_KEY_DEACTIVATED"
    message = "Your API key has been deactivated."


class APIKeyPaused(AuthenticationRequired):
    code = "API_KEY_PAUSED"
    message = "Your API key is paused."


class OrganizationAccessDenied(APIError):
    status, code, type = 403, "ORGANIZATION_ACCESS_DENIED", "authorization_error"
    message = "You don't have access to this organization."


class InsufficientPermissions(APIError):
    status, code, type = 403, "INSUFFICIENT_PERMISSIONS", "authorization_error"
    message = "You don't have permission to perform this action."


class ResourceNotFound(APIError):
    status, code, type = 404, "RESOURCE_NOT_FOUND", "not_found_error"
    message = "The requested resource was not found."


class MethodNotAllowed(APIError):
    status, code, type = 405, "METHOD_NOT_ALLOWED", "client_error"
    message = "This method is not allowed on this resource."


class Conflict(APIError):
    status, code, type = 409, "CONFLICT", "client_error"
    message = "The request conflicts with the current state of the resource."


class PayloadTooLarge(APIError):
    status, code, type = 413, "PAYLOAD_TOO_LARGE", "client_error"
    message = "The request body is too large."


class UnsupportedMediaType(APIError):
    status, code, type = 415, "UNSUPPORTED_MEDIA_TYPE", "client_error"
    message = "The request body must be JSON."


class RateLimitExceeded(APIError):
    status, code, type = 429, "RATE_LIMIT_EXCEEDED", "rate_limit_error"
    message = "Too many requests. Please slow down."

    @classmethod
    def for_bound(
        cls, message: str, limit: int, first_end: datetime | None, now: datetime
    ) -> RateLimitExceeded:
        """A per-user bound reached: ``Retry-After`` is when the first held item ends."""
        wait = max(1, math.ceil((first_end - now).total_seconds())) if first_end else 60
        return cls(message, headers={"Retry-After": str(wait)}, details={"limit": limit})


class CredentialsRejected(APIError):
    """SPEC §10: the provider refused credentials a caller submitted (401 or 403 to the entry's
    check call, or an OAuth error from the token endpoint of a minting entry)."""

    status, code, type = 400, "CREDENTIALS_REJECTED", "validation_error"
    message = "The service refused these credentials. Check them and try again."


class ProviderError(APIError):
    status, code, type = 502, "PROVIDER_ERROR", "server_error"
    message = "The connected service answered unexpectedly."


class ProviderUnavailable(APIError):
    status, code, type = 503, "PROVIDER_UNAVAILABLE", "server_error"
    message = "The connected service is not reachable right now. Please try again shortly."


class ServiceUnavailable(APIError):
    status, code, type = 503, "SERVICE_UNAVAILABLE", "server_error"
    message = "The service is not ready."


class InternalError(APIError):
    pass
