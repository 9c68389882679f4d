"""``/docs`` in a real Chromium with no network beyond loopback: Swagger UI comes from the
service itself, renders the operations under the page's CSP, sends the API key typed into
Authorize, and refuses to be framed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.conftest import Tenant
from tests.support.browser import SQLITE_ONLY, Screenshots
from tests.support.service import ServiceProcess

pytestmark = SQLITE_ONLY  # the page, not the database, is under test

LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
# Recorded by an init script (it runs outside the page's CSP): every CSP violation the page hit.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def offline_context(context: BrowserContext) -> tuple[BrowserContext, list[str]]:
    """A browser context whose requests beyond loopback are aborted (and recorded)."""
    refused: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in {"data", "blob"} or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", only_loopback)
    context.add_init_script(RECORD_VIOLATIONS)
    return context, refused


def open_docs(context: BrowserContext, service: ServiceProcess) -> Page:
    page = context.new_page()
    response = page.goto(f"{service.base_url}/docs")
    assert response is not None and response.status == 200
    return page


def test_docs_render_offline_and_authorize_sends_the_key(
    offline_context: tuple[BrowserContext, list[str]],
    service: ServiceProcess,
    tenant: Tenant,
    shots: Screenshots,
) -> None:
    context, refused = offline_context
    page = open_docs(context, service)
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 20
    authorize_op = page.locator(".opblock-post", has_text="/v1/personal-connectors/authorize")
    expect(authorize_op).to_be_visible()
    authorize_button = page.locator("button.authorize").first
    expect(authorize_button).to_be_visible()
    shots(page, "docs")

    authorize_button.click()
    dialog = page.locator(".dialog-ux")
    expect(dialog.get_by_text("ApiKeyHeader")).to_be_visible()
    expect(dialog.get_by_text("BearerAuth")).to_be_visible()
    dialog.locator("input").first.fill(tenant.api_key)
    dialog.locator("button.modal-btn.authorize").first.click()
    expect(dialog.get_by_text("Authorized")).to_be_visible()
    dialog.locator("button.btn-done").first.click()

    # Try GET /available with the key typed into Authorize: the service answers 200.
    operation = page.locator("#operations-Catalog-list_available")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[placeholder='organization_id']").fill(tenant.organization_id)
    with page.expect_response(lambda r: "/available?" in r.url) as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers.get("x-api-key") == tenant.api_key
    shots(page, "try-it-out")

    assert refused == []
    assert page.evaluate("window.__violations") == []


def test_docs_cannot_be_framed(
    offline_context: tuple[BrowserContext, list[str]], service: ServiceProcess
) -> None:
    context, _ = offline_context
    page = context.new_page()
    page.goto(f"{service.base_url}/livez")  # not even a page of its own origin may frame it
    page.set_content(f'<iframe id="docs" src="{service.base_url}/docs"></iframe>')
    frame_element = page.locator("#docs")
    expect(frame_element).to_be_attached()
    frame = frame_element.element_handle().content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    assert frame.locator("#swagger-ui").count() == 0

    response = page.request.get(f"{service.base_url}/docs")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
