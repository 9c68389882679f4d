"""Why a token cannot be handed out."""

from __future__ import annotations

from personal_connectors.exceptions import (
    APIError,
    Conflict,
    ProviderUnavailable,
    ResourceNotFound,
)


class ReauthorizationRequired(APIError):
    status, code, type = 409, "REAUTHORIZATION_REQUIRED", "client_error"
    message = "The connected account must be connected again."


class ConnectionDisabled(Conflict):
    code = "CONNECTION_DISABLED"
    message = "This connection is disabled."


class TokenUnavailable(ProviderUnavailable):
    """The provider could not refresh the token and no unexpired token is left."""


class RefreshContended(ProviderUnavailable):
    """Another worker holds the refresh lease for longer than we are willing to wait."""


class ConnectionNotFound(ResourceNotFound):
    """Foreign, deleted and unknown connections look the same: never a hint that one exists."""

    def __init__(self) -> None:
        super().__init__("No such connection.")


class InsufficientScope(APIError):
    """The connection was not granted every scope the caller needs (``required_scopes``)."""

    status, code, type = 409, "INSUFFICIENT_SCOPE", "client_error"
    message = "The connected account has not granted every permission this request needs."
