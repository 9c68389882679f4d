"""Tags and metadata on a connection (SPEC §8): `PATCH /{connection_id}` merges them as an RFC
7396 merge patch within stated limits, every connection body shows them, and the list filters
by `tag=key:value`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.flows.conftest import connect
from tests.support import web
from tests.support.db import event_types
from tests.support.service import ServiceProcess


def patch(api: httpx.Client, tenant: Tenant, connection_id: str, body: Any) -> httpx.Response:
    return api.patch(f"/{connection_id}", params=tenant.org, headers=tenant.headers, json=body)


def patched(api: httpx.Client, tenant: Tenant, connection_id: str, body: Any) -> dict[str, Any]:
    response = patch(api, tenant, connection_id, body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def labels(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return body["tags"], body["metadata"]


def shown(api: httpx.Client, tenant: Tenant, connection_id: str) -> tuple[Any, Any]:
    """The tags and metadata as the connection's own page and the list both show them."""
    one = api.get(f"/{connection_id}", params=tenant.org, headers=tenant.headers).json()
    [listed] = [
        item
        for item in api.get("", params=tenant.org, headers=tenant.headers).json()
        if item["id"] == connection_id
    ]
    assert labels(one) == labels(listed)
    return labels(one)


def listed_ids(api: httpx.Client, tenant: Tenant, *tags: str) -> list[str]:
    response = api.get("", params={**tenant.org, "tag": list(tags)}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


def test_a_merge_patch_adds_replaces_and_removes_tags_and_merges_metadata_recursively(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    assert shown(api, tenant, connection_id) == ({}, {})

    body = patched(
        api,
        tenant,
        connection_id,
        {
            "tags": {"team": "sales", "env": "prod"},
            "metadata": {"crm": {"id": 7, "owner": "ann"}, "notes": "first", "list": [1, 2]},
        },
    )
    assert body["id"] == connection_id and body["app_key"] and body["status"] == "active"
    assert labels(body) == (
        {"team": "sales", "env": "prod"},
        {"crm": {"id": 7, "owner": "ann"}, "notes": "first", "list": [1, 2]},
    )

    # Replace one tag, remove one with null, add one; metadata left out stays as it was.
    body = patched(
        api, tenant, connection_id, {"tags": {"env": "staging", "team": None, "tier": "gold"}}
    )
    assert body["tags"] == {"env": "staging", "tier": "gold"}
    assert body["metadata"] == {"crm": {"id": 7, "owner": "ann"}, "notes": "first", "list": [1, 2]}

    # Nested objects merge key by key; arrays and other values are replaced whole.
    body = patched(
        api,
        tenant,
        connection_id,
        {"metadata": {"crm": {"owner": None, "stage": "won"}, "notes": None, "list": [3]}},
    )
    assert labels(body) == (
        {"env": "staging", "tier": "gold"},
        {"crm": {"id": 7, "stage": "won"}, "list": [3]},
    )
    assert shown(api, tenant, connection_id) == labels(body)

    # An empty patch, or one that sets what is already there, changes nothing.
    assert labels(patched(api, tenant, connection_id, {})) == labels(body)
    assert labels(patched(api, tenant, connection_id, {"tags": {"tier": "gold"}})) == labels(body)

    # A null field empties it.
    body = patched(api, tenant, connection_id, {"tags": None, "metadata": None})
    assert labels(body) == ({}, {})
    assert shown(api, tenant, connection_id) == ({}, {})
    assert (
        event_types(service, connection_id) == ["connection.created"] + ["connection.updated"] * 4
    )


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"d": value}
    return value


def at_limit(size: int, character: str = "x") -> dict[str, Any]:
    """Metadata whose compact JSON is ``size`` bytes: `{"b":"…"}` is 8 bytes around its text."""
    return {"b": character * ((size - 8) // len(character.encode()))}


def test_limits_hold_exactly_at_the_boundary(api: httpx.Client, tenant: Tenant) -> None:
    connection_id = connect(api, tenant)
    twenty = {f"key-{n}": "v" * 256 for n in range(19)} | {"k" * 64: "v"}
    assert len(patched(api, tenant, connection_id, {"tags": twenty})["tags"]) == 20
    # 16 KiB counted in UTF-8 bytes: "é" is two.
    for text in ("x", "é"):
        metadata = at_limit(16 * 1024, text)
        assert patched(api, tenant, connection_id, {"metadata": metadata})["metadata"] == metadata


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"tags": {f"extra-{n}": "v" for n in range(20)}}, "tags", "at most 20 tags"),
        ({"tags": {"k" * 65: "v"}}, "tags", "at most 64 characters"),
        ({"tags": {"team": "v" * 257}}, "tags", "at most 256 characters"),
        ({"tags": {"team": 5}}, "tags", "Tag values are strings"),
        ({"tags": {"team": True}}, "tags", "Tag values are strings"),
        ({"tags": {"team": {"nested": "x"}}}, "tags", "Tag values are strings"),
        ({"tags": {"team:x": "v"}}, "tags", "letters, digits"),
        ({"tags": {"": "v"}}, "tags", "letters, digits"),
        ({"tags": ["team"]}, "tags", "valid dictionary"),
        ({"metadata": at_limit(16 * 1024 + 1)}, "metadata", "at most 16384 bytes"),
        ({"metadata": at_limit(16 * 1024 + 2, "é")}, "metadata", "at most 16384 bytes"),
        ({"metadata": [1, 2]}, "metadata", "valid dictionary"),
        ({"metadata": {"deep": nested(40)}}, "metadata", "at most 32"),
        ({"tags": {"ok": "v"}, "metadata": at_limit(20_000)}, "metadata", "16384"),
        ({"labels": {"a": "b"}}, "labels", "Extra inputs"),
    ],
)
def test_a_patch_beyond_a_limit_is_refused_and_changes_nothing(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    body: dict[str, Any],
    field: str,
    says: str,
) -> None:
    connection_id = connect(api, tenant)
    before = labels(patched(api, tenant, connection_id, {"tags": {"a": "1"}, "metadata": {"m": 1}}))

    response = patch(api, tenant, connection_id, body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["fields"] == [field]
    assert says in error["system_message"]
    assert shown(api, tenant, connection_id) == before
    assert event_types(service, connection_id) == ["connection.created", "connection.updated"]


def test_a_number_json_cannot_hold_is_refused_not_stored(api: httpx.Client, tenant: Tenant) -> None:
    connection_id = connect(api, tenant)
    response = api.patch(
        f"/{connection_id}",
        params=tenant.org,
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=b'{"metadata": {"huge": 1e999}}',
    )
    assert response.status_code == 400, response.text
    assert "finite" in response.json()["error"]["system_message"]
    assert shown(api, tenant, connection_id) == ({}, {})


def test_only_the_callers_own_connection_can_be_patched(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = connect(api, other_tenant, login="bob")
    response = patch(api, tenant, theirs, {"tags": {"mine": "now"}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    assert shown(api, other_tenant, theirs) == ({}, {})


def test_the_list_keeps_the_connections_every_tag_filter_matches(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = connect(api, tenant, login="alice")
    bob = connect(api, tenant, login="bob")
    carol = connect(api, tenant, login="carol")
    patched(api, tenant, alice, {"tags": {"team": "sales", "env": "prod"}})
    patched(api, tenant, bob, {"tags": {"team": "sales", "env": "dev", "url": "a:b"}})
    patched(api, tenant, carol, {"tags": {"team": "support"}})
    theirs = connect(api, other_tenant, login="dave")
    patched(api, other_tenant, theirs, {"tags": {"team": "sales"}})

    assert listed_ids(api, tenant, "team:sales") == [bob, alice]  # newest first
    assert listed_ids(api, tenant, "team:sales", "env:prod") == [alice]
    assert listed_ids(api, tenant, "team:support", "env:prod") == []
    assert listed_ids(api, tenant, "team:nobody") == []
    assert listed_ids(api, tenant, "url:a:b") == [bob]  # split at the first colon
    assert listed_ids(api, tenant) == [carol, bob, alice]

    response = api.get("", params={**tenant.org, "tag": "team"}, headers=tenant.headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"]["fields"] == ["tag"] and "key:value" in error["system_message"]
    response = api.get("", params={**tenant.org, "tag": 'te"am:x'}, headers=tenant.headers)
    assert response.status_code == 400 and response.json()["error"]["details"]["fields"] == ["tag"]


def test_concurrent_patches_of_different_keys_all_land(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)

    def add(n: int) -> int:
        with web.client(base_url=service.api, timeout=30) as client:
            return patch(client, tenant, connection_id, {"tags": {f"k{n}": "v"}}).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert set(pool.map(add, range(12))) == {200}
    assert shown(api, tenant, connection_id)[0] == {f"k{n}": "v" for n in range(12)}


@pytest.mark.parametrize("field", ["tags", "metadata"])
def test_a_patch_nested_deeper_than_the_limit_is_refused_whole(
    api: httpx.Client, tenant: Tenant, field: str
) -> None:
    connection_id = connect(api, tenant)
    deep = '{"d": ' * 500 + "{}" + "}" * 500  # parses, but 500 objects deep
    body = f'{{"{field}": {deep}}}'
    response = api.patch(
        f"/{connection_id}",
        params=tenant.org,
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=body.encode(),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["fields"] == [field]
    assert shown(api, tenant, connection_id) == ({}, {})
