"""Drive a real Chromium (Debian's package) through Playwright's sync API.

Playwright's own browser downloads are never used: ``scripts/test`` installs Debian's
``chromium`` and Playwright launches it through ``executable_path``.

Playwright's sync API keeps an asyncio loop running on the test thread while it is started, so
code that calls ``asyncio.run`` (``ServiceProcess.run_db``, ``make_tenant``) must go through
``off_thread`` while a browser is open. The browser fixtures are module-scoped for that reason:
they never stay alive while tests of other modules run on the same xdist worker.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect
from playwright.sync_api import Error as PlaywrightError

from tests.support import web
from tests.support.oidc import login_and_consent

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
# Auto-waiting bound for every expect() and action (a loaded 2-core machine is slow).
DEFAULT_TIMEOUT_MS = 30_000

# The browser tests run against the SQLite service only: PostgreSQL would double their time and
# the pages do not depend on the backend (the API tests cover both).
SQLITE_ONLY = pytest.mark.parametrize("service", ["sqlite"], indirect=True)


def chromium_path() -> str:
    """``PC_TEST_CHROMIUM``, else ``chromium`` on PATH; fails loudly when there is none."""
    path = os.environ.get("PC_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError(
            "no Chromium found: scripts/test installs Debian's `chromium` package "
            "(apt-get install chromium); PC_TEST_CHROMIUM may name another binary"
        )
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """A headless Chromium; every test opens its own contexts (fresh cookies and storage)."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
    )


def off_thread(work: Callable[[], T]) -> T:
    """Run ``work`` on a fresh thread (no asyncio loop there) and return its result."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result(timeout=120)


@dataclass
class Screenshots:
    """Full-page screenshots kept after the run: ``test-artifacts/screenshots/<test>-NN-<step>.png``."""

    test_name: str
    directory: Path = SCREENSHOT_DIR
    taken: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.test_name).strip("_")
        for old in self.directory.glob(f"{self.test_name}-*.png"):
            old.unlink(missing_ok=True)

    def __call__(self, page: Page, step: str) -> Path:
        path = self.directory / f"{self.test_name}-{len(self.taken) + 1:02d}-{step}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except PlaywrightError:
            # Chromium cannot capture a page in the middle of a navigation: once it has loaded.
            page.wait_for_load_state()
            page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path

    def if_open(self, page: Page, step: str) -> Path | None:
        """A screenshot of a window that may close itself any moment (a finished popup)."""
        if page.is_closed():
            return None
        try:
            return self(page, step)
        except PlaywrightError:
            return None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def sign_in_and_consent(
    page: Page, shots: Screenshots, *, login: str = "alice", prefix: str = "provider"
) -> None:
    """Use the provider's real dev-interaction pages as a person would.

    Fills the login form (any login, any password) when the provider asks for it (a context
    that already signed in there only sees consent), then presses Continue on the consent page.
    Returns once Continue was clicked; where the browser goes next is the caller's to check.
    """
    login_box = page.locator("input[name=login]")
    continue_button = page.get_by_role("button", name="Continue")
    expect(login_box.or_(continue_button)).to_be_visible()
    if login_box.is_visible():
        expect(page).to_have_title(re.compile("Sign-in"))
        login_box.fill(login)
        page.locator("input[name=password]").fill("any-password")
        shots(page, f"{prefix}-login")
        page.get_by_role("button", name="Sign-in").click()
    expect(continue_button).to_be_visible()
    shots(page, f"{prefix}-consent")
    continue_button.click()


def create_connect_session(api: httpx.Client, headers: dict[str, str], org: dict[str, str]) -> str:
    """``POST /connect-sessions`` with the user's API key; returns the one-time ``connect_url``."""
    created = api.post("/connect-sessions", params=org, headers=headers, json={})
    assert created.status_code in (200, 201), created.text
    connect_url: str = created.json()["connect_url"]
    return connect_url


def connect_without_browser(
    api: httpx.Client, headers: dict[str, str], org: dict[str, str], app_key: str, login: str
) -> str:
    """A connection made through the plain API flow (httpx at the provider); returns its id."""
    started = api.post("/authorize", params=org, headers=headers, json={"connector_type": app_key})
    assert started.status_code == 200, started.text
    callback_url = login_and_consent(started.json()["authorization_url"], login=login)
    finished = web.get(callback_url, headers={"Accept": "application/json"}, timeout=30)
    assert finished.status_code == 200, finished.text
    connection_id: str = finished.json()["data"]["connection_id"]
    return connection_id


def connection_ids(api: httpx.Client, headers: dict[str, str], org: dict[str, str]) -> set[str]:
    listed = api.get("", params=org, headers=headers)
    assert listed.status_code == 200, listed.text
    return {item["id"] for item in listed.json()}


def open_connect_page(context: BrowserContext, connect_url: str, base_url: str) -> Page:
    """Open a session's ``connect_url`` as a link from elsewhere: its interstitial says whose
    session it is; Continue sets the page cookie and 303s to ``/connect``."""
    page = context.new_page()
    response = page.goto(connect_url)
    assert response is not None and response.ok, response and response.status
    expect(page.locator("#session-owner")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{base_url}/connect")
    # The page's script (the last element of its body) handles the Connect buttons: a click
    # before it has run opens no popup.
    page.wait_for_load_state("load")
    return page


__all__ = [
    "CHROMIUM_ARGS",
    "DEFAULT_TIMEOUT_MS",
    "SCREENSHOT_DIR",
    "SQLITE_ONLY",
    "Screenshots",
    "chromium_path",
    "connect_without_browser",
    "connection_ids",
    "create_connect_session",
    "launch_chromium",
    "off_thread",
    "open_connect_page",
    "origin",
    "sign_in_and_consent",
]
