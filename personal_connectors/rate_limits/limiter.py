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
from typing import NamedTuple

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


class _Limit:
    """One configured limit: `limits`' item, and what every count against it reuses."""

    def __init__(self, spec: str) -> None:
        self.item: RateLimitItem = parse(spec)
        self.amount = self.item.amount
        self.seconds = self.item.get_expiry()
        self.header = (LIMIT_HEADER, str(self.amount).encode())
        # Bucket keys by identifiers: `limits`' key_for joins strings every time.
        self._keys: dict[tuple[str, ...], str] = {}

    def key(self, ids: tuple[str, ...]) -> str:
        key = self._keys.get(ids)
        if key is None:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            key = self._keys[ids] = self.item.key_for(*ids)
        return key


class _Count(NamedTuple):
    """One bucket after this request: its limit, what is left, seconds until its window ends."""

    limit: _Limit
    admitted: bool
    remaining: int
    reset_seconds: int


# A bucket a request counts in: its limit, its identifiers, and whether it is a service key's
# shared one (the 429's message says which).
_Bucket = tuple[_Limit, tuple[str, ...], bool]


class RateLimits:
    def __init__(
        self, caller: str | None, service: str | None, location: str | None = None
    ) -> None:
        """``caller``, ``service``: the limits as configured (``1200/minute``; None: none);
        ``location``: ``CONNECTORS_RATE_LIMIT_STORAGE``."""
        self.caller = _Limit(caller) if caller else None
        self.service = _Limit(service) if service else None
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
        shown: _Count | None = None
        try:
            for limit, ids, total in buckets:
                if self._counters is not None:  # in memory: nothing to await
                    count = _counted(limit, *self._counters.hit(limit.key(ids), limit.seconds))
                else:
                    count = await self._count(limit, ids)
                if not count.admitted:
                    self._skip_until = 0.0
                    return _headers(count), _exceeded(count, total)
                if shown is None or count.remaining < shown.remaining:
                    shown = count
        except (StorageError, OSError, TimeoutError) as exc:
            self._storage_failed(exc)
            return [], None
        self._skip_until = 0.0
        assert shown is not None
        return _headers(shown), None

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
            for limit, ids, total in buckets:
                key = limit.key(ids)
                used = await self.storage.get(key)
                if used >= limit.amount:
                    reset = max(0, math.ceil(await self.storage.get_expiry(key) - time.time()))
                    count = _Count(limit, False, 0, reset)
                    return _headers(count), _exceeded(count, total)
        except (StorageError, OSError, TimeoutError) as exc:
            self._storage_failed(exc)
        return [], None

    def _buckets(self, api_key_id: str, is_service: bool, end_user_id: str | None) -> list[_Bucket]:
        """The buckets a request counts in, the caller's first."""
        buckets: list[_Bucket] = []
        if self.caller is not None:
            ids = (
                ("caller", api_key_id, end_user_id or "") if is_service else ("caller", api_key_id)
            )
            buckets.append((self.caller, ids, False))
        if is_service and self.service is not None:
            buckets.append((self.service, (SERVICE_TOTAL, api_key_id), True))
        return buckets

    async def _count(self, limit: _Limit, ids: tuple[str, ...]) -> _Count:
        """`limits`' fixed window in a shared storage (``FixedWindowRateLimiter.hit``: one
        increment of the bucket's counter, which opens its window), reading what is left from
        that increment's own result rather than from a second read, which other requests may
        have moved on."""
        key = limit.key(ids)
        used = await self.storage.incr(key, limit.seconds)
        count = _counted(limit, used, await self.storage.get_expiry(key))
        if not count.admitted and count.reset_seconds == 0:
            # A full bucket without an expiry: in Redis the increment that opened it lost its
            # EXPIRE (a process killed between the two); it would refuse forever. Start anew.
            await self.storage.clear(key)
        return count

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


def _counted(limit: _Limit, used: int, ends: float) -> _Count:
    """A bucket's count from its counter after this request and its window's end."""
    reset = max(0, math.ceil(ends - time.time()))
    return _Count(limit, used <= limit.amount, max(0, limit.amount - used), reset)


def _headers(count: _Count) -> Headers:
    return [
        count.limit.header,
        (REMAINING_HEADER, b"%d" % count.remaining),
        (RESET_HEADER, b"%d" % count.reset_seconds),
    ]


def _exceeded(count: _Count, service_total: bool) -> RateLimitExceeded:
    wait = max(1, count.reset_seconds)
    item = count.limit.item
    limit = f"{item.amount} requests per {_period(item)}"
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
        details={"limit": item.amount, "period_seconds": count.limit.seconds},
    )


def _period(item: RateLimitItem) -> str:
    name = type(item).GRANULARITY.name
    return name if item.multiples == 1 else f"{item.multiples} {name}s"
