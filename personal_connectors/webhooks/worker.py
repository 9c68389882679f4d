"""The delivery worker: claims due deliveries from the outbox and POSTs them, signed.

It runs inside ``connectors serve`` as a background task (``running_worker``, started in the
application's lifespan) and as ``connectors webhooks deliver`` for deployments that want it
apart. Any number of workers may run at once, in any number of processes: each claims rows
with a lease (``WebhookRepository.claim_due``), so a delivery goes out once per attempt, and
one whose worker died is retried when its lease runs out.

Deliveries go through the process's shared client (``Runtime.http``) and so its outbound guard:
the receiver's name is resolved when the connection is made and the connection goes to an
address judged public (``outbound.guard``), so neither a name that points inside the deployment
nor one repointed between a check and the connection (DNS rebinding) is sent to.

An attempt succeeds on any 2xx answer. Anything else (another status, a redirect, a timeout,
a refused connection, a destination the guard refuses) is retried after the next delay of
``CONNECTORS_WEBHOOK_RETRY_SCHEDULE`` plus up to 10% jitter, until the schedule is used up;
then the delivery is ``failed``. Only the status code and the error's class (or the guard's
reason) are kept, never a response body, and the endpoint's URL is never logged (receivers
sometimes put a credential in it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from personal_connectors.crypto.aead import DecryptionError
from personal_connectors.crypto.keyring import KeyConfigurationError
from personal_connectors.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, utcnow
from personal_connectors.outbound.guard import WEBHOOK_CALL, DestinationRefused
from personal_connectors.runtime import Runtime
from personal_connectors.telemetry.metrics import count_webhook_delivery
from personal_connectors.webhooks.repository import WebhookRepository
from personal_connectors.webhooks.service import open_secret
from personal_connectors.webhooks.signing import sign

logger = logging.getLogger(__name__)

BATCH_SIZE = 20
# How long past the HTTP timeout a claim lasts before another worker may take the row again.
CLAIM_MARGIN_SECONDS = 30.0
JITTER = 0.1
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class Attempt:
    status_code: int | None = None
    error: str | None = None
    final: bool = False  # no point in retrying (the endpoint is gone or its secret unreadable)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Round:
    attempted: int = 0
    delivered: int = 0  # answered 2xx


def body_of(payload: dict[str, Any]) -> str:
    """The exact text that is signed and sent; identical on every retry."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class DeliveryWorker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.delays = self.settings.webhook_retry_delays
        # The shared client follows no redirect (one would carry a signed body to a URL the
        # organization never registered); receivers get their own timeout, per call.
        self.http = runtime.http

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    async def deliver_due(self) -> Round:
        """One round: claim a batch, send it concurrently, record the outcomes."""
        now = utcnow()
        lease_until = now + timedelta(
            seconds=self.settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS
        )
        async with self.runtime.sessions() as session:
            claimed = await WebhookRepository(session).claim_due(now, lease_until, BATCH_SIZE)
        if not claimed:
            return Round()
        attempts = await asyncio.gather(
            *(self._attempt(delivery, endpoint) for delivery, endpoint in claimed)
        )
        async with self.runtime.sessions() as session:
            repository = WebhookRepository(session)
            finished = utcnow()
            outcomes = []
            for (delivery, _), attempt in zip(claimed, attempts, strict=True):
                values = self._outcome(delivery, attempt, finished)
                if not await repository.finish_attempt(delivery, **values):
                    logger.warning("webhook %s: claim expired before the outcome", delivery.id)
                outcomes.append(_outcome_name(values))
            await session.commit()
        for outcome in outcomes:
            count_webhook_delivery(outcome)
        return Round(len(claimed), sum(attempt.ok for attempt in attempts))

    async def drain(self) -> Round:
        """Deliver until nothing is due right now (``webhooks deliver --once``); failed
        attempts stay scheduled for their retry."""
        total = Round()
        while (done := await self.deliver_due()).attempted:
            total = Round(total.attempted + done.attempted, total.delivered + done.delivered)
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a round that fails is logged and the loop goes on."""
        while not stop.is_set():
            try:
                attempted = (await self.deliver_due()).attempted
            except Exception:
                logger.exception("webhook delivery round failed")
                attempted = 0
            if attempted == 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.webhook_poll_seconds)

    async def _attempt(
        self, delivery: WebhookDelivery, endpoint: WebhookEndpoint | None
    ) -> Attempt:
        if endpoint is None or not endpoint.is_active:
            return Attempt(error="endpoint removed", final=True)
        try:
            secret = open_secret(self.runtime.sealer, endpoint)
        except (DecryptionError, KeyConfigurationError):
            logger.error("webhook %s: the endpoint's secret cannot be opened", delivery.id)
            return Attempt(error="secret unreadable", final=True)
        body = body_of(delivery.payload)
        headers = sign(secret, delivery.id, utcnow(), body).as_dict()
        try:
            response = await self.http.post(
                endpoint.url,
                content=body.encode(),
                headers={**headers, "Content-Type": "application/json"},
                timeout=self.settings.webhook_timeout_seconds,
                extensions=WEBHOOK_CALL,  # judged by the webhook policy
            )
        except DestinationRefused as exc:
            logger.warning(
                "webhook %s to endpoint %s refused: %s", delivery.id, endpoint.id, exc.reason
            )
            # Not final: the name may be repointed outward; each retry checks again.
            attempt = Attempt(error=f"destination refused: {exc.reason}"[:200])
        except httpx.HTTPError as exc:
            attempt = Attempt(error=type(exc).__name__)
        else:
            attempt = Attempt(status_code=response.status_code)
            if not attempt.ok:
                attempt = Attempt(status_code=response.status_code, error="non-2xx answer")
        logger.info(
            "webhook %s (%s) to endpoint %s, attempt %d: %s",
            delivery.id,
            delivery.event_type,
            endpoint.id,
            delivery.attempts,
            attempt.status_code or attempt.error,
        )
        return attempt

    def _outcome(
        self, delivery: WebhookDelivery, attempt: Attempt, now: datetime
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
        }
        if attempt.ok:
            return {**values, "status": DeliveryStatus.SUCCEEDED, "finished_at": now}
        if attempt.final or delivery.attempts >= self.max_attempts:
            return {**values, "status": DeliveryStatus.FAILED, "finished_at": now}
        return {**values, "next_attempt_at": now + timedelta(seconds=self.delay(delivery.attempts))}

    def delay(self, attempts_made: int) -> float:
        """Seconds before the next attempt, after ``attempts_made`` failed ones."""
        base = self.delays[min(attempts_made, len(self.delays)) - 1]
        return base * (1 + _random.uniform(0, JITTER))


def _outcome_name(values: dict[str, Any]) -> str:
    """The metric's outcome of an attempt: delivered, to be retried, or given up."""
    status = values.get("status")
    if status == DeliveryStatus.SUCCEEDED:
        return "succeeded"
    return "failed" if status == DeliveryStatus.FAILED else "retrying"


@asynccontextmanager
async def running_worker(runtime: Runtime) -> AsyncIterator[None]:
    """A delivery worker as a background task for the block's duration (``serve``'s lifespan).

    On exit the current round is given the HTTP timeout to finish; one cut short is retried by
    whichever worker next finds its claim expired.
    """
    if not runtime.settings.webhook_worker:
        yield
        return
    worker = DeliveryWorker(runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="webhook-delivery")
    try:
        yield
    finally:
        stop.set()
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, runtime.settings.webhook_timeout_seconds + 5)
