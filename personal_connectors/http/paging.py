"""The HTTP side of keyset paging (``storage.paging``): the ``limit`` and ``after`` query
parameters, and the ``Link: <…>; rel="next"`` header that carries the next page's URL."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response

from personal_connectors.storage.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Cursor,
    PageRequest,
)


async def page_request(
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_PAGE_SIZE,
            description=f"Items per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
        ),
    ] = DEFAULT_PAGE_SIZE,
    after: Annotated[
        str | None,
        Query(
            description='The cursor of the next page; the `Link: <…>; rel="next"` header of a '
            "page gives the whole URL of the next one."
        ),
    ] = None,
) -> PageRequest:
    return PageRequest(limit, Cursor.decode(after) if after is not None else None)


PageDep = Annotated[PageRequest, Depends(page_request)]

# A paged route's ``responses=``: its 200 documents the ``Link`` header.
NEXT_LINK_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Link": {
                "description": '`<URL>; rel="next"`: the next page, this request\'s absolute URL '
                "with `after` set; absent on the last page.",
                "schema": {"type": "string"},
            }
        }
    }
}


def set_next_link(
    response: Response, request: Request, base_url: str, after: Cursor | None
) -> None:
    """Set ``Link`` to this request's URL on the public ``base_url``, its query kept but for
    ``after``, which names the next page; no header on the last page (``after`` None)."""
    if after is None:
        return
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    query.append(("after", after.encode()))
    url = f"{base_url}{request.url.path}?{urlencode(query)}"
    response.headers["Link"] = f'<{url}>; rel="next"'
