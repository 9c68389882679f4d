"""What ``api_auth`` fills in is a credential: it never shows in a repr (a log line, a traceback)."""

from __future__ import annotations

from personal_connectors.providers.api_auth import apply_api_auth
from personal_connectors.providers.schema import ApiAuth


def test_applied_credentials_do_not_show_in_a_repr() -> None:
    secret = "sk-live-0123456789abcdef"
    applied = apply_api_auth(
        ApiAuth(headers={"X-Api-Key": "{api_key}"}, query={"key": "{api_key}"}),
        {"api_key": secret},
    )
    assert applied.headers == {"X-Api-Key": secret} and applied.query == {"key": secret}
    assert secret not in repr(applied)
