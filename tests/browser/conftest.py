"""Fixtures for the real-browser tests: Chromium via Playwright, fresh contexts, screenshots.

The Playwright instance and the browser are module-scoped (see tests/support/browser.py for
why not session-scoped); each test opens its own contexts, so cookies never leak between tests.
The session's ``oidc`` provider is interactive: it shows its real login and consent forms.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, expect, sync_playwright

from tests.conftest import Tenant, make_tenant
from tests.support.browser import DEFAULT_TIMEOUT_MS, Screenshots, launch_chromium, off_thread
from tests.support.service import ServiceProcess


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def new_context(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserContext]]:
    """Opens fresh browser contexts (separate cookie jars, i.e. separate "browsers").

    When the test fails, every page still open is screenshotted (``<test>-failure-NN-page.png``)
    and its URL printed, to show where the flow stopped."""
    opened: list[BrowserContext] = []

    def open_context(**options: object) -> BrowserContext:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        opened.append(context)
        return context

    yield open_context
    if request.node.stash.get(CALL_FAILED, False):
        failure_shots = Screenshots(f"{request.node.name}-failure")
        for context in opened:
            for page in context.pages:
                path = failure_shots.if_open(page, "page")
                print(f"failure screenshot {path} of {page.url}")
    for context in opened:
        context.close()


@pytest.fixture
def context(new_context: Callable[..., BrowserContext]) -> BrowserContext:
    return new_context()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture
def tenant(service: ServiceProcess) -> Tenant:
    """A fresh organization, owner and API key (made off the Playwright thread)."""
    return off_thread(lambda: make_tenant(service))


@pytest.fixture
def other_tenant(service: ServiceProcess) -> Tenant:
    return off_thread(lambda: make_tenant(service))
