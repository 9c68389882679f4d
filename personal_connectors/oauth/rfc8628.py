"""OAuth 2.0 Device Authorization Grant (RFC 8628), the client's side.

The device authorization request (§3.1) and the polling token request (§3.4) are sent by
``OAuthClient`` through Authlib with the app's client authentication; this module holds what
the RFC itself fixes: the grant type, the answer's shape (§3.2) and how the polling errors
(§3.5) change what the client does next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personal_connectors.oauth.errors import ProviderBadAnswer

DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"

# §3.2: "If no value is provided, clients MUST use 5 as the default."
DEFAULT_INTERVAL = 5
# §3.5: on slow_down "the interval MUST be increased by 5 seconds for this and all subsequent
# requests".
SLOW_DOWN_STEP = 5
# Bounds on what a provider may ask of us, so a hostile answer cannot park a flow for a day or
# have complete-oauth hammer it.
MAX_INTERVAL = 300
MAX_EXPIRES_IN = 3600

AUTHORIZATION_PENDING = "authorization_pending"
SLOW_DOWN = "slow_down"
# Errors that mean "not yet": the device code stays valid and polling goes on. Every other
# error (access_denied, expired_token, invalid_grant, …) ends the flow.
KEEP_POLLING = frozenset({AUTHORIZATION_PENDING, SLOW_DOWN})


@dataclass(frozen=True)
class DeviceAuthorization:
    """The device authorization response (§3.2). ``device_code`` is a secret; the rest is shown."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int

    def __repr__(self) -> str:  # never print the device code
        return f"DeviceAuthorization(user_code={self.user_code!r}, expires_in={self.expires_in})"


def _positive_int(value: Any, default: int | None, upper: int) -> int:
    if value in (None, "") and default is not None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ProviderBadAnswer("the device authorization answer has a bad number") from None
    if number <= 0:
        raise ProviderBadAnswer("the device authorization answer has a bad number")
    return min(number, upper)


def parse_device_authorization(body: Any) -> DeviceAuthorization:
    """Check the §3.2 answer. Google's older ``verification_url`` spelling is accepted."""
    if not isinstance(body, dict):
        raise ProviderBadAnswer("the device authorization answer is not a JSON object")
    device_code = body.get("device_code")
    user_code = body.get("user_code")
    verification_uri = body.get("verification_uri") or body.get("verification_url")
    for name, value in (
        ("device_code", device_code),
        ("user_code", user_code),
        ("verification_uri", verification_uri),
    ):
        if not isinstance(value, str) or not value:
            raise ProviderBadAnswer(f"the device authorization answer has no {name}")
    complete = body.get("verification_uri_complete")
    assert isinstance(device_code, str) and isinstance(user_code, str)
    assert isinstance(verification_uri, str)
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=verification_uri,
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=_positive_int(body.get("expires_in"), None, MAX_EXPIRES_IN),
        interval=_positive_int(body.get("interval"), DEFAULT_INTERVAL, MAX_INTERVAL),
    )


def next_interval(current: int, error: str) -> int:
    """The polling interval after a "not yet" answer (§3.5)."""
    if error == SLOW_DOWN:
        return min(current + SLOW_DOWN_STEP, MAX_INTERVAL)
    return current
