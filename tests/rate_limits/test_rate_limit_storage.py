"""Where rate limits are counted (SPEC §12): with `CONNECTORS_RATE_LIMIT_STORAGE` naming a Redis
URL, every instance shares one count, so three `connectors serve` on one database admit one key
exactly its limit in total; when that Redis is down, requests are admitted uncounted (fail
open) with a logged warning, and counting resumes when it is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_tenant
from tests.support import web
from tests.support.oidc import free_port
from tests.support.redis_server import RedisServer
from tests.support.service import ServiceProcess
from tests.tokens.conftest import wait_for

LIMIT = 10
STORAGE_DOWN_WARNING = "rate limits not enforced"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def start_instances(
    service: ServiceProcess, redis: RedisServer, tmp_path: Path, count: int
) -> list[ServiceProcess]:
    env = {
        **service.env,
        "CONNECTORS_RATE_LIMIT": f"{LIMIT}/hour",
        "CONNECTORS_RATE_LIMIT_STORAGE": redis.url,
    }
    return [
        ServiceProcess(free_port(), env, tmp_path / f"instance-{n}.log").start()
        for n in range(count)
    ]


def test_three_instances_share_one_count_in_redis(
    service: ServiceProcess, redis: RedisServer, tmp_path: Path
) -> None:
    instances = start_instances(service, redis, tmp_path, 3)
    try:
        tenant = make_tenant(service)
        statuses = []
        remaining = []
        for n in range(3 * LIMIT):  # each instance alone would admit LIMIT of these
            instance = instances[n % 3]
            answer = web.get(instance.api + "/", params=tenant.org, headers=tenant.headers)
            statuses.append(answer.status_code)
            remaining.append(int(answer.headers["x-ratelimit-remaining-requests"]))
        assert statuses == [200] * LIMIT + [429] * (2 * LIMIT)
        # One count across the instances: each answer's remaining follows the one before it.
        assert remaining == [*range(LIMIT - 1, -1, -1), *[0] * (2 * LIMIT)]
    finally:
        for instance in instances:
            instance.stop()


def test_redis_down_admits_uncounted_with_a_warning_then_counting_resumes(
    service: ServiceProcess, redis: RedisServer, tmp_path: Path
) -> None:
    (instance,) = start_instances(service, redis, tmp_path, 1)
    try:
        tenant = make_tenant(service)

        def listing() -> httpx.Response:
            return web.get(instance.api + "/", params=tenant.org, headers=tenant.headers)

        first = listing()
        assert first.status_code == 200
        assert first.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)

        redis.stop()
        answers = [listing() for _ in range(2 * LIMIT)]
        assert [a.status_code for a in answers] == [200] * (2 * LIMIT)
        assert not any("x-ratelimit-limit-requests" in a.headers for a in answers)
        assert instance.logs().count(STORAGE_DOWN_WARNING) == 1  # once, not once a request

        # A fresh Redis on the same address: counting starts again (from an empty store).
        redis.start()
        wait_for(
            lambda: "x-ratelimit-limit-requests" in listing().headers,
            what="counting to resume after Redis came back",
        )
        statuses = [listing().status_code for _ in range(LIMIT)]
        assert 429 in statuses
    finally:
        instance.stop()
        redis.stop()


def test_a_count_left_without_expiry_starts_a_new_window(
    service: ServiceProcess, redis: RedisServer, tmp_path: Path
) -> None:
    """A process killed between a window's first increment and its EXPIRE leaves a counter that
    never expires: the next refusal clears it instead of refusing that caller forever."""
    (instance,) = start_instances(service, redis, tmp_path, 1)
    try:
        tenant = make_tenant(service)
        key = f"personal-connectors:LIMITER/caller/{tenant.api_key_id}/{LIMIT}/1/hour"
        assert redis.command("SET", key, str(LIMIT * 5)) == b"+OK\r\n"  # no TTL

        def listing() -> httpx.Response:
            return web.get(instance.api + "/", params=tenant.org, headers=tenant.headers)

        stuck = listing()
        assert stuck.status_code == 429
        assert stuck.headers["retry-after"] == "1"
        fresh = listing()
        assert fresh.status_code == 200, fresh.text
        assert fresh.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)
        assert 0 < int(fresh.headers["x-ratelimit-reset-requests"]) <= 3600
    finally:
        instance.stop()
