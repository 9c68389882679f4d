"""The proxy's own refusals (the provider's answers pass through; these keep the envelope)."""

from __future__ import annotations

from personal_connectors.exceptions import APIError, ValidationFailed


class ProviderTimeout(APIError):
    status, code, type = 504, "PROVIDER_TIMEOUT", "server_error"
    message = "The connected service did not answer in time. Please try again."


class UnsafePath(ValidationFailed):
    """A ``{path}`` that could leave the entry's host or base path."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"The proxied path {why}; give a path relative to the provider's API base URL "
            "(e.g. `user/repos`).",
            details={"fields": ["path"]},
        )


class UnsafeDestination(ValidationFailed):
    """A connection value the API address is built from does not pass the entry's pattern or
    the outbound rule; names the value, never shows it."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"The provider API address of this connection cannot be used: {why}. Connect the "
            "account again, or ask the operator to check the connector's patterns.",
            details={"fields": ["connection_id"]},
        )


class NoApiBaseUrl(ValidationFailed):
    def __init__(self, app_key: str) -> None:
        super().__init__(
            f"The connector {app_key} declares no api_base_url, so its API cannot be called "
            "through the proxy; the operator can add one in the providers file.",
            details={"fields": ["connection_id"]},
        )
