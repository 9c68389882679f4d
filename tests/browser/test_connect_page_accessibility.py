"""Accessibility of the hosted connect page, checked in a real browser.

Names of controls use Playwright's accessible-name computation; contrast is computed here from
``getComputedStyle`` with the WCAG 2.x relative-luminance formula; Tab order is walked with the
keyboard. The page is checked with one connection listed, so both Connect and Disconnect exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.browser import (
    SQLITE_ONLY,
    Screenshots,
    connect_without_browser,
    create_connect_session,
    open_connect_page,
)
from tests.support.service import ServiceProcess

MIN_CONTRAST = 4.5  # WCAG 2.x AA for normal text; applied to every text, buttons included
PHONE = {"width": 375, "height": 667}
CONTROLS = (
    "button, input:not([type=hidden]), select, textarea, a[href], "
    "[role=button], [role=link], [tabindex]:not([tabindex='-1'])"
)
ACTION_BUTTONS = re.compile(r"^(Connect|Reconnect|Disconnect)\b")


@pytest.fixture
def open_page(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    new_context: Callable[..., BrowserContext],
) -> Callable[..., Page]:
    """The user's connect page, with one account already connected (through the plain API)."""
    connect_without_browser(api, tenant.headers, tenant.org, PROVIDER_KEY, login="erin")

    def open_(**context_options: Any) -> Page:
        context = new_context(**context_options)
        url = create_connect_session(api, tenant.headers, tenant.org)
        page = open_connect_page(context, url, service.base_url)
        expect(page.locator("[data-connection-id]")).to_have_count(1)
        return page

    return open_


# --- colour maths (WCAG 2.x) ------------------------------------------------------------------

RGBA = tuple[float, float, float, float]  # 0-255 channels, alpha 0-1


def composite(top: RGBA, bottom: RGBA) -> RGBA:
    """``top`` painted over an opaque ``bottom`` (source-over)."""
    alpha = top[3]
    return (
        top[0] * alpha + bottom[0] * (1 - alpha),
        top[1] * alpha + bottom[1] * (1 - alpha),
        top[2] * alpha + bottom[2] * (1 - alpha),
        1.0,
    )


def as_rgba(values: list[float]) -> RGBA:
    r, g, b, a = (float(v) for v in values)
    return (r, g, b, a)


def relative_luminance(color: RGBA) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in color[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGBA, b: RGBA) -> float:
    lighter, darker = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_maths_matches_known_values() -> None:
    white, black = (255.0, 255.0, 255.0, 1.0), (0.0, 0.0, 0.0, 1.0)
    assert contrast_ratio(white, black) == pytest.approx(21.0)
    assert contrast_ratio(white, white) == pytest.approx(1.0)
    assert contrast_ratio((118.0, 118.0, 118.0, 1.0), white) == pytest.approx(4.54, abs=0.01)
    assert composite((0.0, 0.0, 0.0, 0.5), white)[:3] == (127.5, 127.5, 127.5)


# Every visible element with its own text: its colour and the background layers beneath it,
# each converted to sRGB bytes by painting it on a canvas (so any CSS colour syntax works).
TEXT_STYLES_JS = """
() => {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = "#000";
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const ownText = [...el.childNodes]
      .filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent.trim())
      .join(" ")
      .trim();
    const isField = el.matches("input:not([type=hidden]), textarea, select");
    if (!ownText && !isField) continue;
    if (!el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    if (el.matches(":disabled")) continue;  // WCAG 1.4.3 exempts inactive components
    const style = getComputedStyle(el);
    const layers = [];
    let images = [];
    for (let node = el; node; node = node.parentElement) {
      const s = getComputedStyle(node);
      if (s.backgroundImage !== "none") images.push(node.tagName + ": " + s.backgroundImage);
      const layer = rgba(s.backgroundColor);
      layers.push(layer);
      if (layer[3] === 1) break;
    }
    out.push({
      what: el.tagName.toLowerCase() + " " + JSON.stringify((ownText || el.value || "").slice(0, 40)),
      color: rgba(style.color),
      layers,
      images,
    });
  }
  return out;
}
"""


@dataclass
class ContrastFinding:
    what: str
    ratio: float


def contrast_failures(page: Page) -> tuple[list[ContrastFinding], int]:
    """Texts under ``MIN_CONTRAST`` (or on an unverifiable background image), and how many were checked."""
    failures = []
    checked = page.evaluate(TEXT_STYLES_JS)
    for item in checked:
        if item["images"]:
            failures.append(ContrastFinding(f"{item['what']} over {item['images']}", 0.0))
            continue
        background: RGBA = (255.0, 255.0, 255.0, 1.0)  # the canvas under everything
        for layer in reversed(item["layers"]):
            background = composite(as_rgba(layer), background)
        foreground = composite(as_rgba(item["color"]), background)
        ratio = contrast_ratio(foreground, background)
        if ratio < MIN_CONTRAST:
            failures.append(ContrastFinding(item["what"], round(ratio, 2)))
    return failures, len(checked)


# --- the checks -----------------------------------------------------------------------------


def assert_controls_are_named(page: Page, scope: str = "body") -> int:
    controls = page.locator(scope).locator(CONTROLS)
    named = 0
    for index in range(controls.count()):
        control = controls.nth(index)
        if not control.is_visible():
            continue
        expect(
            control, f"control #{index} in {scope} has no accessible name"
        ).to_have_accessible_name(re.compile(r"\S"))
        named += 1
    return named


@SQLITE_ONLY
def test_document_basics_and_named_controls(
    open_page: Callable[..., Page], shots: Screenshots
) -> None:
    page = open_page()
    shots(page, "page")
    assert (page.locator("html").get_attribute("lang") or "").strip()
    assert page.title().strip()
    viewport = page.locator('meta[name="viewport"]')
    expect(viewport).to_have_count(1)
    assert "width=device-width" in (viewport.get_attribute("content") or "")

    positive = page.evaluate(
        "() => [...document.querySelectorAll('[tabindex]')]"
        ".filter((el) => el.tabIndex > 0).map((el) => el.outerHTML.slice(0, 80))"
    )
    assert positive == [], f"positive tabindex breaks the natural order: {positive}"

    assert assert_controls_are_named(page) >= 2  # at least one Connect and one Disconnect
    # Each action button says what it acts on: no two read the same to a screen reader.
    actions = page.get_by_role("button", name=ACTION_BUTTONS)
    names = [actions.nth(i).aria_snapshot() for i in range(actions.count())]
    assert len(names) >= 2 and len(set(names)) == len(names), names
    # The confirmation dialog's controls too, and focus moves into it.
    page.locator("[data-connection-id]").get_by_role(
        "button", name=re.compile("^Disconnect")
    ).click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    assert assert_controls_are_named(page, "dialog[open]") >= 2
    assert page.evaluate("() => !!document.activeElement.closest('dialog[open]')"), (
        "focus did not move into the confirmation dialog"
    )
    shots(page, "dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)


@SQLITE_ONLY
def test_tab_reaches_every_action_button_in_dom_order(open_page: Callable[..., Page]) -> None:
    page = open_page()
    buttons = page.get_by_role("button", name=ACTION_BUTTONS)
    expected = [
        buttons.nth(i).evaluate("(el, i) => { el.dataset.a11yOrder = String(i); return i; }", i)
        for i in range(buttons.count())
        if buttons.nth(i).is_visible()
    ]
    assert len(expected) >= 2

    focusable_count = page.evaluate(f"() => document.querySelectorAll({CONTROLS!r}).length")
    reached: list[int] = []
    page.locator("body").focus()
    for _ in range(focusable_count + 3):
        page.keyboard.press("Tab")
        state = page.evaluate(
            """() => {
              const el = document.activeElement;
              const s = el ? getComputedStyle(el) : null;
              return {
                order: el && el.dataset ? el.dataset.a11yOrder : undefined,
                indicator: !!s && (s.outlineStyle !== "none" && s.outlineWidth !== "0px"
                                   || s.boxShadow !== "none"),
              };
            }"""
        )
        if state["order"] is not None:
            assert state["indicator"], f"button {state['order']} shows no focus indicator"
            order = int(state["order"])
            if order in reached:
                break  # wrapped around
            reached.append(order)
    assert reached == expected


@SQLITE_ONLY
def test_colour_contrast_of_the_default_theme(
    open_page: Callable[..., Page], shots: Screenshots
) -> None:
    page = open_page()
    failures, checked = contrast_failures(page)
    assert checked >= 4, "too few texts found to judge the page"
    assert failures == [], f"contrast below {MIN_CONTRAST}:1: {failures}"

    page.locator("[data-connection-id]").get_by_role(
        "button", name=re.compile("^Disconnect")
    ).click()
    expect(page.locator("dialog[open]")).to_be_visible()
    failures, _ = contrast_failures(page)
    shots(page, "dialog")
    assert failures == [], f"contrast below {MIN_CONTRAST}:1 with the dialog open: {failures}"


@SQLITE_ONLY
def test_usable_at_a_phone_viewport(open_page: Callable[..., Page], shots: Screenshots) -> None:
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    shots(page, "phone")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"horizontal scroll: content is {width}px wide"
    buttons = page.get_by_role("button", name=ACTION_BUTTONS)
    assert buttons.count() >= 2
    for index in range(buttons.count()):
        box = buttons.nth(index).bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        # A thumb-sized target (WCAG 2.2 2.5.8 asks for 24 px at least).
        assert box["height"] >= 24 and box["width"] >= 24

    page.locator("[data-connection-id]").get_by_role(
        "button", name=re.compile("^Disconnect")
    ).click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    shots(page, "phone-dialog")
