"""Paging of the connection list (SPEC §8, shared with `GET /end-users`): `limit` (default 100,
at most 1,000), an opaque `after` cursor, and the next page's absolute URL in a
`Link: <…>; rel="next"` header that the last page does not send; the body stays a bare array."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from personal_connectors.models import Connection
from personal_connectors.portability.importer import ConnectionImporter
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support import web
from tests.support.service import ServiceProcess

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def seed(service: ServiceProcess, tenant: Tenant, count: int) -> list[str]:
    """``count`` connections of the tenant's user, imported at once (as fast as rows come), the
    even ones tagged `parity:even`; ten of them, around the 100th (when there are), then share one
    ``created_at`` to the microsecond, so the order (and a page's end) must fall back on the
    id. Returns the ids, newest first."""
    lines = [
        json.dumps(
            {
                "user_id": tenant.user_id,
                "app_key": PROVIDER_KEY,
                "account_id": f"acct-{n:03}",
                "access_token": f"at-{n}",
                "tags": {"parity": "even" if n % 2 == 0 else "odd", "n": str(n)},
            }
        ).encode()
        for n in range(count)
    ]

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        report = await ConnectionImporter(session, runtime, tenant.organization_id).run(lines)
        assert report.imported == count, report.as_dict()
        newest_first = select(Connection.id, Connection.created_at).where(
            Connection.organization_id == tenant.organization_id
        )
        newest_first = newest_first.order_by(Connection.created_at.desc(), Connection.id.desc())
        rows = (await session.execute(newest_first)).all()
        if tied := rows[95:105]:  # across the end of the first page of 100
            await session.execute(
                update(Connection)
                .where(Connection.id.in_([row.id for row in tied]))
                .values(created_at=tied[0].created_at)
            )
            await session.commit()
        ordered = await session.execute(newest_first.with_only_columns(Connection.id))
        return list(ordered.scalars())

    return service.run_db(work)


def next_url(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    return match["url"]


def follow(
    client: httpx.Client, tenant: Tenant, url: str, params: dict[str, Any]
) -> tuple[list[list[str]], list[str]]:
    """Every page from ``url``: the ids of each, and the Link URLs that led on."""
    pages: list[list[str]] = []
    links: list[str] = []
    response = client.get(url, params=params or None, headers=tenant.headers)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, list)
        pages.append([item["id"] for item in body])
        link = next_url(response)
        if link is None:
            return pages, links
        links.append(link)
        response = client.get(link, headers=tenant.headers)


@pytest.fixture
def big_tenant(service: ServiceProcess, tenant: Tenant) -> tuple[Tenant, list[str]]:
    return tenant, seed(service, tenant, 250)


def test_following_link_headers_visits_every_connection_exactly_once(
    service: ServiceProcess, big_tenant: tuple[Tenant, list[str]]
) -> None:
    tenant, newest_first = big_tenant
    with web.client(timeout=30) as client:
        pages, links = follow(client, tenant, service.api, {**tenant.org, "limit": 100})

    assert [len(page) for page in pages] == [100, 100, 50]
    assert [item for page in pages for item in page] == newest_first  # each once, in order
    assert len(links) == 2
    for link in links:
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}" == service.base_url  # absolute, public URL
        assert parts.path == "/v1/personal-connectors"
        query = parse_qs(parts.query)
        assert query["organization_id"] == [tenant.organization_id]
        assert query["limit"] == ["100"] and len(query["after"]) == 1


def test_the_default_page_is_100_and_filters_carry_over_to_the_next_pages(
    service: ServiceProcess, api: httpx.Client, big_tenant: tuple[Tenant, list[str]]
) -> None:
    tenant, newest_first = big_tenant
    first = api.get("", params=tenant.org, headers=tenant.headers)
    assert len(first.json()) == 100 and next_url(first) is not None

    even = {**tenant.org, "tag": ["parity:even"], "app_key": PROVIDER_KEY, "limit": "50"}
    pages, links = follow(api, tenant, service.api, even)
    assert [len(page) for page in pages] == [50, 50, 25]
    all_even = api.get("", params={**even, "limit": 1000}, headers=tenant.headers)
    assert next_url(all_even) is None
    assert [item for page in pages for item in page] == [c["id"] for c in all_even.json()]
    assert all(c["tags"]["parity"] == "even" for c in all_even.json())
    for link in links:
        query = parse_qs(urlsplit(link).query)
        assert query["tag"] == ["parity:even"] and query["app_key"] == [PROVIDER_KEY]

    exact = api.get("", params={**tenant.org, "limit": 250}, headers=tenant.headers)
    assert [c["id"] for c in exact.json()] == newest_first
    assert "link" not in exact.headers  # a full last page says no more


def test_a_cursor_outlives_its_connection_and_skips_nothing(
    service: ServiceProcess, api: httpx.Client, tenant: Tenant
) -> None:
    newest_first = seed(service, tenant, 30)
    first = api.get("", params={**tenant.org, "limit": 10}, headers=tenant.headers)
    link = next_url(first)
    assert link is not None
    # The page's last connection (the cursor's) goes, and a newer one arrives meanwhile.
    assert api.delete(f"/{newest_first[9]}", headers=tenant.headers).status_code == 204
    newcomer = seed_one(service, tenant)

    rest, _ = follow(api, tenant, link, {})
    seen = [c["id"] for c in first.json()] + [item for page in rest for item in page]
    assert seen == newest_first
    assert newcomer not in seen


def seed_one(service: ServiceProcess, tenant: Tenant) -> str:
    line = {"user_id": tenant.user_id, "app_key": PROVIDER_KEY, "account_id": "newcomer"}
    line["access_token"] = "at-new"

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        importer = ConnectionImporter(session, runtime, tenant.organization_id)
        assert (await importer.run([json.dumps(line).encode()])).imported == 1
        found = await session.execute(
            select(Connection.id).where(Connection.account_id == "newcomer")
        )
        return found.scalar_one()

    return service.run_db(work)


def forged(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "not a cursor"}, "after"),
        ({"after": "%%%"}, "after"),
        ({"after": forged("yesterday|conn_x")}, "after"),
        ({"after": forged("2026-01-01T00:00:00|conn_x")}, "after"),  # no UTC offset
        ({"after": forged("2026-01-01T00:00:00+00:00")}, "after"),  # no id
        ({"after": "A" * 500}, "after"),
    ],
)
def test_a_bad_limit_or_cursor_is_400_naming_it(
    api: httpx.Client, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    response = api.get("", params={**tenant.org, **params}, headers=tenant.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["fields"] == [field]


def test_the_largest_page_is_allowed(api: httpx.Client, tenant: Tenant) -> None:
    response = api.get("", params={**tenant.org, "limit": 1000}, headers=tenant.headers)
    assert response.status_code == 200 and response.json() == []
    assert "link" not in response.headers
