"""Why a flow failed, in the words the callback and complete-oauth report."""

from __future__ import annotations

import re

from personal_connectors.exceptions import APIError, RateLimitExceeded

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


class TooManyPendingFlows(RateLimitExceeded):
    message = "Too many sign-ins are waiting to be finished. Finish one, or wait, then retry."


MISMATCH = "browser_mismatch"
MISMATCH_TEXT = (
    "This sign-in link was opened in a different browser than the one that started it, "
    "so it was refused and nothing was connected. Start again from the app, in this browser."
)
NOT_LAUNCHED = "not_launched"
NOT_LAUNCHED_TEXT = (
    "This organization only accepts sign-ins started from the app's own link, so this one was "
    "refused and nothing was connected. Start again from the app."
)
LAUNCH_REFUSED = "launch_refused"
LAUNCH_REFUSED_TEXT = "You declined this sign-in link, so nothing was connected."

# What a result page says for each failure code: fixed sentences only, never the provider's
# `error_description` or any other text a link could carry (a crafted callback URL would
# otherwise put an attacker's words on this service's page).
FAILURE_TEXTS = {
    "access_denied": "Access was not granted, so nothing was connected.",
    "invalid_request": "The provider could not process the sign-in request.",
    "unauthorized_client": "This app is not allowed to connect to the provider.",
    "unsupported_response_type": "The provider does not support this kind of sign-in.",
    "invalid_scope": "The provider refused the requested permissions.",
    "invalid_grant": "The provider refused the sign-in; it may have expired. Please try again.",
    "invalid_client": "The provider did not accept this app's credentials.",
    "server_error": "The sign-in failed because of an error. Please try again.",
    "temporarily_unavailable": "The provider could not be reached. Please try again shortly.",
    "login_required": "You need to sign in at the provider. Please try again.",
    "consent_required": "The provider needs your consent. Please try again.",
    "interaction_required": "The provider needs you to finish signing in. Please try again.",
    "issuer_mismatch": "The answer did not come from the expected provider.",
    "account_mismatch": "Another account consented than the one to extend.",
    "provider_error": "The provider answered unexpectedly. Please try again.",
    MISMATCH: MISMATCH_TEXT,
    NOT_LAUNCHED: NOT_LAUNCHED_TEXT,
    LAUNCH_REFUSED: LAUNCH_REFUSED_TEXT,
}
GENERIC_FAILURE_TEXT = "The account could not be connected. Please try again."


def failure_text(code: str) -> str:
    return FAILURE_TEXTS.get(code, GENERIC_FAILURE_TEXT)


def page_code(code: str) -> str:
    """The code a page may carry: one of the fixed vocabulary, else ``provider_error``."""
    return code if code in FAILURE_TEXTS else "provider_error"
