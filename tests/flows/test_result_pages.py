"""The callback's answers never carry text that came with the request: a crafted callback URL
(someone's own valid state plus words of their choosing) cannot put those words on this
service's page. Each error code has a fixed sentence."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import Tenant
from tests.flows.conftest import follow_callback, start_flow
from tests.support.service import ServiceProcess

PHISHING = "Your account is locked. Call +1 555 0100 now"


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        ("access_denied", "Access was not granted"),
        ("server_error", "because of an error"),
        ("call_555_0100_now", "could not be connected"),
    ],
)
def test_the_callback_page_shows_a_fixed_sentence_per_code(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, error: str, sentence: str
) -> None:
    started = start_flow(api, tenant)
    query = urlencode({"state": started["state"], "error": error, "error_description": PHISHING})
    page = follow_callback(f"{service.api}/callback?{query}", accept="text/html")
    assert page.status_code == 400
    assert sentence in page.text
    # Neither the provider's text nor its number (a bare "555" could be in the page's own
    # origin list: the service's port is random).
    assert "555 0100" not in page.text and "555_0100" not in page.text
    assert "locked" not in page.text


def test_the_callback_json_carries_no_provider_text(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = start_flow(api, tenant)
    query = urlencode(
        {"state": started["state"], "error": "access_denied", "error_description": PHISHING}
    )
    answer = follow_callback(f"{service.api}/callback?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"]["details"]["error"] == "access_denied"
    assert "locked" not in answer.text
