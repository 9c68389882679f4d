"""Counting a caller's requests against ``CONNECTORS_RATE_LIMIT`` and
``CONNECTORS_RATE_LIMIT_SERVICE`` (SPEC §12).

Buckets: a user key has one (its own requests); a service key has one per end user it names
(``CONNECTORS_RATE_LIMIT`` each; requests that name none share one) and one for all of them
together (``CONNECTORS_RATE_LIMIT_SERVICE``). The end user's bucket is counted first and a
request it refuses never reaches the shared one, so one noisy end user cannot use up the
service key's total for the others.

Counting is `limits`' fixed window: a bucket's window opens at its first request and lasts the
limit's period, every request in it is one increment (one `INCRBY` in Redis, atomic across
instances), and it frees all its requests when it ends. In memory (the default,
``rate_limits.memory``) each process counts for itself; with a Redis URL (`limits`' asyncio
Redis storage) every process shares the counts. When Redis cannot be
reached, requests are admitted uncounted (fail open) and a warning is logged at most once a
minute; Redis is tried again after a few seconds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.errors import StorageError
from limits.storage import storage_from_string

from personal_connectors.exceptions import RateLimitExceeded
from personal_connectors.rate_limits.memory import WindowCounters

logger = logging.getLogger(__name__)

# The Freddy API's names (SPEC §12).
LIMIT_HEADER = b"x-ratelimit-limit-requests"
REMAINING_HEADER = b"x-ratelimit-remaining-requests"
RESET_HEADER = b"x-ratelimit-reset-requests"

# After Redis failed, how long requests are admitted without asking it (seconds), and how often
# that is logged: a Redis that is down must not cost every request a connection attempt, nor
# write a log line per request.
STORAGE_RETRY_SECONDS = 5.0
STORAGE_WARNING_SECONDS = 60.0
# A Redis that does not answer within this fails open like one that refuses connections.
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_KEY_PREFIX = "personal-connectors"
# Bucket keys remembered (one per caller, or per service key and end user) before starting over.
KEY_CACHE_SIZE = 100_000
# The first identifier of a service key's shared bucket (a caller's is "caller").
SERVICE_TOTAL = "service"

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class _Count:
    """One bucket after this request: its limit, what is left, seconds until its window ends."""

    item: RateLimitItem
    admitted: bool
    remaining: int
    reset_seconds: int


class RateLimits:
    def __init__(
        self, caller: str | None, service: str | None, location: str | None = None
    ) -> None:
        """``caller``, ``service``: the limits as configured (``1200/minute``; None: none);
        ``location``: ``CONNECTORS_RATE_LIMIT_STORAGE``."""
        self.caller = parse(caller) if caller else None
        self.service = parse(service) if service else None
        # In memory, one synchronous call counts and tells the window's end.
        self._counters: WindowCounters | None = WindowCounters()
        self.storage: Storage = self._counters
        if location is not None and location != "memory://":
            storage = storage_from_string(
                f"async+{location}",
                wrap_exceptions=True,
                key_prefix=REDIS_KEY_PREFIX,
                connect_timeout=REDIS_TIMEOUT_SECONDS,
                stream_timeout=REDIS_TIMEOUT_SECONDS,
            )
            assert isinstance(storage, Storage)  # an async+ URI gives the asyncio storage
            self.storage = storage
            self._counters = None
        # Bucket keys by (limit, identifiers): `limits`' key_for joins strings every time.
        self._keys: dict[tuple[RateLimitItem, tuple[str, ...]], str] = {}
        self._skip_until: float = 0.0  # monotonic: the storage failed; admit uncounted until then
        self._warned_at: float = -math.inf

    async def check(
        self, api_key_id: str, is_service: bool, end_user_id: str | None
    ) -> tuple[Headers, RateLimitExceeded | None]:
        """Count one request of the caller: the headers its answer carries (none when no limit
        applies to it, or the storage is down), and the 429 to answer instead when a bucket is
        full (None: admitted).

        ``end_user_id``: the end user a service key names (None: none, or not a valid id)."""
        buckets = self._buckets(api_key_id, is_service, end_user_id)
        if not buckets or (self._skip_until and time.monotonic() < self._skip_until):
            return [], None
        counts: list[tuple[_Count, bool]] = []
        try:
            for item, key in buckets:
                count = await self._count(item, key)
                counts.append((count, key[0] == SERVICE_TOTAL))
                if not count.admitted:
                    break
        except (StorageError, OSError, TimeoutError) as exc:
            self._storage_failed(exc)
            return [], None
        self._skip_until = 0.0
        refused = next(((c, total) for c, total in counts if not c.admitted), None)
        shown = refused[0] if refused else min((c for c, _ in counts), key=_remaining)
        return _headers(shown), (_exceeded(*refused) if refused else None)

    async def spent(
        self, api_key_id: str, is_service: bool, end_user_id: str | None
    ) -> tuple[Headers, RateLimitExceeded | None]:
        """``check`` without counting: the 429 a request would get because a bucket is already
        full (None: room left, no limit, or the storage is down). For a refusal that must come
        before costly work whose outcome decides what is counted
        (``rate_limits.FAILED_EXCHANGES``)."""
        buckets = self._buckets(api_key_id, is_service, end_user_id)
        if not buckets or (self._skip_until and time.monotonic() < self._skip_until):
            return [], None
        try:
            for item, ids in buckets:
                key = self._key(item, ids)
                used = await self.storage.get(key)
                if used >= item.amount:
                    reset = max(0, math.ceil(await self.storage.get_expiry(key) - time.time()))
                    count = _Count(item, False, 0, reset)
                    return _headers(count), _exceeded(count, ids[0] == SERVICE_TOTAL)
        except (StorageError, OSError, TimeoutError) as exc:
            self._storage_failed(exc)
        return [], None

    def _buckets(
        self, api_key_id: str, is_service: bool, end_user_id: str | None
    ) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        """The limit and identifiers of each bucket a request counts in, the caller's first."""
        buckets: list[tuple[RateLimitItem, tuple[str, ...]]] = []
        if self.caller is not None:
            ids = (
                ("caller", api_key_id, end_user_id or "") if is_service else ("caller", api_key_id)
            )
            buckets.append((self.caller, ids))
        if is_service and self.service is not None:
            buckets.append((self.service, (SERVICE_TOTAL, api_key_id)))
        return buckets

    def _key(self, item: RateLimitItem, ids: tuple[str, ...]) -> str:
        key = self._keys.get((item, ids))
        if key is None:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            key = self._keys[(item, ids)] = item.key_for(*ids)
        return key

    async def _count(self, item: RateLimitItem, ids: tuple[str, ...]) -> _Count:
        """`limits`' fixed window (``FixedWindowRateLimiter.hit``: one increment of the
        bucket's counter, which opens its window), reading what is left from that increment's
        own result rather than from a second read, which other requests may have moved on."""
        key = self._key(item, ids)
        if self._counters is not None:
            used, ends = self._counters.hit(key, item.get_expiry())
        else:
            used = await self.storage.incr(key, item.get_expiry())
            ends = await self.storage.get_expiry(key)
        reset = max(0, math.ceil(ends - time.time()))
        admitted = used <= item.amount
        if not admitted and reset == 0:
            # A full bucket without an expiry: in Redis the increment that opened it lost its
            # EXPIRE (a process killed between the two); it would refuse forever. Start anew.
            await self.storage.clear(key)
        return _Count(item, admitted, max(0, item.amount - used), reset)

    def _storage_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + STORAGE_RETRY_SECONDS
        if now - self._warned_at >= STORAGE_WARNING_SECONDS:
            self._warned_at = now
            logger.warning(
                "rate limits not enforced: their storage (CONNECTORS_RATE_LIMIT_STORAGE) failed "
                "(%s); requests are admitted uncounted until it answers again",
                type(exc.__cause__ or exc).__name__,
            )


def _headers(count: _Count) -> Headers:
    return [
        (LIMIT_HEADER, str(count.item.amount).encode()),
        (REMAINING_HEADER, str(count.remaining).encode()),
        (RESET_HEADER, str(count.reset_seconds).encode()),
    ]


def _remaining(count: _Count) -> int:
    return count.remaining


def _exceeded(count: _Count, service_total: bool) -> RateLimitExceeded:
    wait = max(1, count.reset_seconds)
    limit = f"{count.item.amount} requests per {_period(count.item)}"
    whose = (
        "This service key's requests for all its end users together exceed"
        if service_total
        else "This caller's requests exceed"
    )
    return RateLimitExceeded(
        f"{whose} the rate limit of {limit}. Wait {wait} s (the Retry-After header) before "
        "the next request, and spread requests out: the x-ratelimit-* headers of every answer "
        "say how many are left and when the window frees them.",
        headers={"Retry-After": str(wait)},
        details={"limit": count.item.amount, "period_seconds": count.item.get_expiry()},
    )


def _period(item: RateLimitItem) -> str:
    name = type(item).GRANULARITY.name
    return name if item.multiples == 1 else f"{item.multiples} {name}s"
