"""Browser binding of flows (RFC 9700 §4.7): the callback must arrive in the browser that
started the flow.

Without it, anyone who can make a victim open an authorization URL (a link in a chat) gets the
victim's account attached to the attacker's user, since the state alone only proves that *some*
browser followed *some* link. A bound flow keeps the SHA-256 of a random secret; the secret lives
in an HttpOnly cookie of the browser that started the flow, one cookie per flow
(``pc_flow_<flow id>``) so two flows started side by side in one browser do not evict each other.

Two ways a flow gets bound:

* started from the hosted connect page: the page's start endpoint sets the cookie itself;
* a provider that does not return ``state`` (``returns_state: false``, e.g. ClickUp): the API
  hands out a one-time *launch URL* on this service instead of the provider's URL; opening it
  binds the flow to that browser, then redirects to the provider. The callback, arriving without
  ``state``, finds the flow by the cookie's hash alone — never by "the latest flow of this
  provider", which would hand one user's code to another user's flow.

Flows started by the plain API for a provider that returns ``state`` stay unbound and unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import API_PREFIX, Settings
from personal_connectors.crypto import hashing
from personal_connectors.crypto.aead import associated_data
from personal_connectors.flows.exceptions import FlowFailed
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.models import Flow, FlowStatus, utcnow
from personal_connectors.providers.catalog import Catalog
from personal_connectors.runtime import Runtime

COOKIE_PREFIX = "pc_flow_"
SECRET_PREFIX = "fb_"
LAUNCH_PREFIX = "lt_"
LAUNCH_PATH = f"{API_PREFIX}/flows/launch"
# The cookie goes to the callback's directory: sent to /callback and /flows/launch, nowhere else.
COOKIE_PATH = f"{API_PREFIX}/"
MISMATCH = "browser_mismatch"
MISMATCH_TEXT = (
    "This sign-in link was opened in a different browser than the one that started it, "
    "so it was refused and nothing was connected. Start again from the app, in this browser."
)
_MAX_SECRET_LENGTH = 100


@dataclass(frozen=True)
class BrowserBinding:
    """What the connect page hands FlowService.start: the flow is bound to this secret."""

    secret: str
    connect_session_id: str | None = None

    @property
    def digest(self) -> str:
        return hashing.digest(self.secret)


def new_binding(connect_session_id: str | None = None) -> BrowserBinding:
    return BrowserBinding(SECRET_PREFIX + hashing.random_token(), connect_session_id)


def cookie_name(flow_id: str) -> str:
    return COOKIE_PREFIX + flow_id


def _valid_secret(value: str) -> bool:
    return value.startswith(SECRET_PREFIX) and len(value) <= _MAX_SECRET_LENGTH


def set_cookie(response: Response, settings: Settings, flow_id: str, secret: str) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (sent on the provider's top-level redirect
    back, not on cross-site subrequests), Secure when the service is served over https."""
    response.set_cookie(
        cookie_name(flow_id),
        secret,
        max_age=settings.flow_ttl_seconds,
        path=COOKIE_PATH,
        secure=settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, settings: Settings, flow_id: str) -> None:
    response.delete_cookie(
        cookie_name(flow_id),
        path=COOKIE_PATH,
        secure=settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )


def flow_cookies(cookies: Mapping[str, str]) -> dict[str, str]:
    """The browser's flow-binding cookies, by flow id (malformed ones ignored)."""
    return {
        name.removeprefix(COOKIE_PREFIX): value
        for name, value in cookies.items()
        if name.startswith(COOKIE_PREFIX) and _valid_secret(value)
    }


def requires_binding(flow: Flow, catalog: Catalog) -> bool:
    entry = catalog.get(flow.app_key)
    return flow.binding_hash is not None or (entry is not None and not entry.returns_state)


def check(flow: Flow, catalog: Catalog, cookies: Mapping[str, str]) -> None:
    """Refuse a bound flow unless this browser holds its secret. Raises FlowFailed."""
    if not requires_binding(flow, catalog):
        return
    secret = flow_cookies(cookies).get(flow.id)
    if (
        flow.binding_hash is None
        or secret is None
        or not hashing.matches(secret, flow.binding_hash)
    ):
        raise FlowFailed(MISMATCH, MISMATCH_TEXT)


def stateless_keys(catalog: Catalog) -> list[str]:
    return [entry.key for entry in catalog if not entry.returns_state]


async def find_stateless(
    session: AsyncSession, catalog: Catalog, cookies: Mapping[str, str]
) -> Flow | None:
    """The one pending flow of a state-less provider this browser is bound to, or None.

    Matched by the cookie's flow id *and* its secret's hash, so a forged cookie name finds
    nothing. More than one candidate (two such flows in flight in one browser) finds nothing
    too: the callback cannot tell which one the provider answered, and guessing could attach
    an account to the wrong flow.
    """
    bound = flow_cookies(cookies)
    keys = stateless_keys(catalog)
    if not bound or not keys:
        return None
    candidates = [
        flow
        for flow in await FlowRepository(session).pending_of(list(bound), list(keys))
        if flow.binding_hash is not None and hashing.matches(bound[flow.id], flow.binding_hash)
    ]
    return candidates[0] if len(candidates) == 1 else None


# --- launch URLs for state-less providers -------------------------------------------------------


def _launch_aad(flow_id: str) -> bytes:
    return associated_data("flows", flow_id, "launch_url")


def prepare_launch(flow: Flow, runtime: Runtime, authorization_url: str) -> str:
    """Keep the provider's URL sealed in the flow; give out a one-time launch URL instead."""
    token = LAUNCH_PREFIX + hashing.random_token()
    flow.launch_hash = hashing.digest(token)
    flow.launch_url_ct = runtime.sealer.seal(authorization_url, _launch_aad(flow.id))
    return f"{runtime.settings.base_url}{LAUNCH_PATH}?{urlencode({'t': token})}"


@dataclass(frozen=True)
class Launch:
    flow_id: str
    secret: str
    provider_url: str


async def launch(session: AsyncSession, runtime: Runtime, token: str | None) -> Launch | None:
    """Bind the flow to the browser that opened its launch URL — once — and give back the
    provider URL; None for an unknown, used or expired launch token."""
    if not token or not token.startswith(LAUNCH_PREFIX) or len(token) > _MAX_SECRET_LENGTH:
        return None
    digest = hashing.digest(token)
    flows = FlowRepository(session)
    flow = await flows.by_launch_hash(digest)
    if (
        flow is None
        or flow.status != FlowStatus.PENDING
        or flow.expires_at <= utcnow()
        or flow.launch_url_ct is None
    ):
        return None
    provider_url = runtime.sealer.open(flow.key_id, flow.launch_url_ct, _launch_aad(flow.id))
    binding = new_binding()
    # One browser only: the conditional update lets exactly one opener bind the flow.
    if not await flows.bind_launched(flow, digest, binding.digest):
        return None
    return Launch(flow.id, binding.secret, provider_url)
