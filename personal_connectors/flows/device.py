"""The device authorization grant (RFC 8628) as a flow, for users with no browser at hand.

``POST /authorize`` with ``"grant": "device_code"`` asks the provider for a device code and
answers the user code and verification URI to show; the user approves on any device. There is
no callback: ``POST /complete-oauth`` polls the provider's token endpoint instead, never sooner
than the provider's interval (a call before then answers "not yet" without asking), and on
success ends exactly like a redirect flow — the same identity call, the same connection upsert.

The device code is a bearer secret for the grant: it is sealed in the flow row (associated data
``flows:<id>:device_code``), never logged and never returned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

from personal_connectors.apps.gateway import provider_call
from personal_connectors.crypto.aead import associated_data
from personal_connectors.exceptions import ValidationFailed
from personal_connectors.flows.exceptions import FlowFailed
from personal_connectors.flows.steps import FlowSteps
from personal_connectors.models import Flow, FlowGrant, FlowStatus, utcnow
from personal_connectors.oauth import rfc8628
from personal_connectors.oauth.client import OAuthClient, TokenGrant
from personal_connectors.oauth.errors import ProviderRejected, ProviderUnreachable

logger = logging.getLogger(__name__)


class StillPending(Exception):
    """The provider said "not yet" (or could not be asked): poll again later."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class DevicePrompt:
    """What the user is shown: where to go and which code to enter."""

    authorization_url: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int


class DeviceFlows:
    """Start and poll device flows; the steps shared with redirect flows are ``FlowSteps``."""

    def __init__(self, flows: FlowSteps) -> None:
        self.flows = flows
        self.sealer = flows.runtime.sealer

    async def begin(self, flow: Flow, client: OAuthClient) -> DevicePrompt:
        """Ask for a device code and record it on the (not yet saved) flow."""
        if client.endpoints.device_authorization_url is None:
            raise ValidationFailed.for_fields(
                f"The connector {flow.app_key} does not support the device flow.", "grant"
            )
        async with provider_call("device authorization request"):
            device = await client.request_device_authorization(flow.scopes)
        now = utcnow()
        flow.grant_type = FlowGrant.DEVICE_CODE
        flow.device_code_ct = self.sealer.seal(device.device_code, self._aad(flow))
        flow.poll_interval = device.interval
        # §3.5: the first token request waits one interval like every later one.
        flow.next_poll_at = now + timedelta(seconds=device.interval)
        # The provider's code lifetime, not the service's flow TTL: the user has that long.
        flow.expires_at = now + timedelta(seconds=device.expires_in)
        return DevicePrompt(
            authorization_url=device.verification_uri_complete or device.verification_uri,
            user_code=device.user_code,
            verification_uri=device.verification_uri,
            verification_uri_complete=device.verification_uri_complete,
            interval=device.interval,
        )

    async def poll(self, flow: Flow) -> int | None:
        """Ask the provider once, if the interval allows, and move the flow on.

        Returns the seconds until the next poll may reach the provider while the flow is still
        pending, or None when it ended (completed or failed).
        """
        now = utcnow()
        if flow.expires_at <= now:
            if await self.flows.repository.claim(flow, FlowStatus.PENDING, FlowStatus.EXCHANGING):
                await self._fail(flow, FlowFailed("expired_token", "The device code expired."))
            return None
        if flow.next_poll_at is not None and now < flow.next_poll_at:
            return math.ceil((flow.next_poll_at - now).total_seconds())
        # One poll at a time: a device code can be redeemed once, and two concurrent polls
        # would both count against the provider's interval.
        if not await self.flows.repository.claim(flow, FlowStatus.PENDING, FlowStatus.EXCHANGING):
            return flow.poll_interval
        try:
            try:
                entry, client = await self.flows.client(flow)
            except FlowFailed as failure:
                if failure.code != "temporarily_unavailable":
                    raise
                raise StillPending(failure.code) from None  # metadata down: the code still holds
            assert flow.device_code_ct is not None
            device_code = self.sealer.open(flow.key_id, flow.device_code_ct, self._aad(flow))
            grant, identity = await self.flows.obtain(
                flow, entry, client, self._token(client, device_code, flow.scopes)
            )
        except StillPending as pending:
            return await self._wait(flow, pending.reason)
        except FlowFailed as failure:
            await self._fail(flow, failure)
            return None
        except Exception:
            await self.flows.session.rollback()
            await self._fail(flow, FlowFailed("server_error", "The connection could not be saved."))
            raise
        flow.device_code_ct = None
        await self.flows.connect(flow, grant, identity)
        return None

    def _token(
        self, client: OAuthClient, device_code: str, scopes: list[str]
    ) -> Awaitable[TokenGrant]:
        async def request() -> TokenGrant:
            try:
                return await client.poll_device_token(device_code, requested_scopes=scopes)
            except ProviderRejected as exc:
                if exc.error in rfc8628.KEEP_POLLING:
                    raise StillPending(exc.error) from None
                raise
            except ProviderUnreachable:
                # The device code is still good; a provider hiccup must not end the flow.
                raise StillPending("temporarily_unavailable") from None

        return request()

    async def _wait(self, flow: Flow, reason: str) -> int:
        interval = rfc8628.next_interval(flow.poll_interval or rfc8628.DEFAULT_INTERVAL, reason)
        if reason == rfc8628.SLOW_DOWN:
            logger.info("flow %s: the provider asked to slow down to %d s", flow.id, interval)
        flow.poll_interval = interval
        flow.next_poll_at = utcnow() + timedelta(seconds=interval)
        flow.status = FlowStatus.PENDING
        await self.flows.session.commit()
        return interval

    async def _fail(self, flow: Flow, failure: FlowFailed) -> None:
        flow.device_code_ct = None
        await self.flows.fail(flow, failure)

    @staticmethod
    def _aad(flow: Flow) -> bytes:
        return associated_data("flows", flow.id, "device_code")
