"""Browser binding of flows (RFC 9700 §4.7): the callback must arrive in the browser that
started the flow.

Without it, anyone who can make a victim open an authorization URL (a link in a chat) gets the
victim's account attached to the attacker's user, since the state alone only proves that *some*
browser followed *some* link. A bound flow keeps the SHA-256 of a random secret; the secret lives
in an HttpOnly cookie of the browser that started the flow, one cookie per flow
(``pc_flow_<flow id>``) so two flows started side by side in one browser do not evict each other.

Two ways a flow gets bound:

* started from the hosted connect page: the page's start endpoint sets the cookie itself;
* started by the API: the answer carries a one-time *launch URL* on this service. Opening it
  shows whose account the connection will join; its Continue button (a same-origin POST) binds
  the flow to that browser and goes on to the provider. For a provider that does not return
  ``state`` (``returns_state: false``) the launch URL is the only way in (it is
  also the ``authorization_url``): the callback, arriving without ``state``, finds the flow by
  the cookie's hash alone — never by "the latest flow of this provider".

An API flow opened through the provider's URL directly stays unbound, unless its organization
sets ``require_launched_flows``: then the callback refuses every flow that is not bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import API_PREFIX, Settings, origin_of
from personal_connectors.crypto import hashing
from personal_connectors.crypto.aead import associated_data
from personal_connectors.flows.exceptions import (
    LAUNCH_REFUSED,
    MISMATCH,
    MISMATCH_TEXT,
    NOT_LAUNCHED,
    NOT_LAUNCHED_TEXT,
    FlowFailed,
)
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
_MAX_SECRET_LENGTH = 100


@dataclass(frozen=True)
class BrowserBinding:
    """What the connect page hands FlowService.start: the flow is bound to this secret."""

    secret: str
    connect_session_id: str | None = None
    # The connect page's handle for this attempt (its opener asks /connect/status about it).
    attempt: str | None = None

    @property
    def digest(self) -> str:
        return hashing.digest(self.secret)


def new_binding(
    connect_session_id: str | None = None, attempt: str | None = None
) -> BrowserBinding:
    return BrowserBinding(SECRET_PREFIX + hashing.random_token(), connect_session_id, attempt)


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


def same_origin(headers: Mapping[str, str], settings: Settings) -> bool:
    """A browser request sent by one of this service's own pages: ``Origin`` is ours (browsers
    send it on every POST) and ``Sec-Fetch-Site``, when sent, says ``same-origin``."""
    fetch_site = headers.get("sec-fetch-site")
    return headers.get("origin") == origin_of(settings.base_url) and fetch_site in (
        None,
        "same-origin",
    )


def requires_binding(flow: Flow, catalog: Catalog, *, org_requires_launch: bool = False) -> bool:
    entry = catalog.get(flow.app_key)
    return (
        flow.binding_hash is not None
        or org_requires_launch
        or (entry is not None and not entry.returns_state)
    )


def check(
    flow: Flow, catalog: Catalog, cookies: Mapping[str, str], *, org_requires_launch: bool = False
) -> None:
    """Refuse a bound flow unless this browser holds its secret, and an unbound one when the
    organization requires launched flows. Raises FlowFailed."""
    if not requires_binding(flow, catalog, org_requires_launch=org_requires_launch):
        return
    if flow.binding_hash is None and org_requires_launch:
        raise FlowFailed(NOT_LAUNCHED, NOT_LAUNCHED_TEXT)
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
        for flow in await FlowRepository(session).bound_pending(list(bound), keys, utcnow())
        if flow.binding_hash is not None and hashing.matches(bound[flow.id], flow.binding_hash)
    ]
    return candidates[0] if len(candidates) == 1 else None


# --- launch URLs ---------------------------------------------------------------------------------


def _launch_aad(flow_id: str) -> bytes:
    return associated_data("flows", flow_id, "launch_url")


def prepare_launch(flow: Flow, runtime: Runtime, authorization_url: str) -> str:
    """Keep the provider's URL sealed in the flow; give out a one-time launch URL for it."""
    token = LAUNCH_PREFIX + hashing.random_token()
    flow.launch_hash = hashing.digest(token)
    flow.launch_url_ct = runtime.sealer.seal(authorization_url, _launch_aad(flow.id))
    return f"{runtime.settings.base_url}{LAUNCH_PATH}?{urlencode({'t': token})}"


@dataclass(frozen=True)
class PendingLaunch:
    """A launch URL not opened yet: what its page shows before the person continues."""

    flow: Flow
    digest: str
    provider_url: str
    user_email: str
    user_name: str | None
    organization_name: str


@dataclass(frozen=True)
class Launch:
    flow_id: str
    secret: str
    provider_url: str


async def pending_launch(
    session: AsyncSession, runtime: Runtime, token: str | None
) -> PendingLaunch | None:
    """The flow a launch token names while it can still be launched; None otherwise.

    Reading changes nothing: a link preview or a mail scanner that fetches the URL does not
    use it up; only the person's Continue (``launch``) does."""
    if not token or not token.startswith(LAUNCH_PREFIX) or len(token) > _MAX_SECRET_LENGTH:
        return None
    digest = hashing.digest(token)
    repository = FlowRepository(session)
    flow = await repository.by_launch_hash(digest)
    if (
        flow is None
        or flow.status != FlowStatus.PENDING
        or flow.expires_at <= utcnow()
        or flow.launch_url_ct is None
    ):
        return None
    provider_url = runtime.sealer.open(flow.key_id, flow.launch_url_ct, _launch_aad(flow.id))
    email, name, organization = await repository.owner_labels(flow)
    return PendingLaunch(flow, digest, provider_url, email, name, organization)


async def launch(session: AsyncSession, runtime: Runtime, token: str | None) -> Launch | None:
    """Bind the flow to the browser that continued from its launch page — once — and give back
    the provider URL; None for an unknown, used or expired launch token."""
    pending = await pending_launch(session, runtime, token)
    if pending is None:
        return None
    binding = new_binding()
    # One browser only: the conditional update lets exactly one opener bind the flow.
    if not await FlowRepository(session).bind_launched(
        pending.flow.id, pending.digest, binding.digest
    ):
        return None
    return Launch(pending.flow.id, binding.secret, pending.provider_url)


async def refuse_launch(session: AsyncSession, runtime: Runtime, token: str | None) -> bool:
    """The person said the account is not theirs: the flow ends failed (``launch_refused``)."""
    pending = await pending_launch(session, runtime, token)
    if pending is None:
        return False
    repository = FlowRepository(session)
    if not await repository.claim(pending.flow, FlowStatus.PENDING, FlowStatus.FAILED):
        return False
    pending.flow.error_code = LAUNCH_REFUSED
    pending.flow.error_description = "The person who opened the launch link declined it."
    pending.flow.launch_hash = None
    pending.flow.launch_url_ct = None
    pending.flow.code_verifier_ct = None
    pending.flow.finished_at = utcnow()
    await session.commit()
    runtime.flow_wakeups.notify(pending.flow.id)
    return True
