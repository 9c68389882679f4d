"""Reading a small JSON document from another server without holding more than it may weigh.

Metadata and registration answers come from servers anyone can name (SPEC §11): the body is
streamed and the read stops past ``MAX_DOCUMENT_BYTES`` (decoded, so a compressed bomb stops
too), whatever ``Content-Length`` says or leaves out, so a huge or endless answer costs at most
that much memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

MAX_DOCUMENT_BYTES = 64 * 1024


class DocumentTooLarge(ValueError):
    """The answer's body is over ``MAX_DOCUMENT_BYTES``; the message is safe to show."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"the answer is over {MAX_DOCUMENT_BYTES // 1024} KiB")
        self.status_code = status_code


@dataclass(frozen=True)
class Document:
    status_code: int
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.content)


async def fetch_document(
    http: httpx.AsyncClient, method: str, url: str, **request: Any
) -> Document:
    """``method url`` (``request``: httpx's request arguments) and its body, read up to the cap.

    Raises httpx's errors as a request does, and ``DocumentTooLarge``.
    """
    async with http.stream(method, url, **request) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
            raise DocumentTooLarge(response.status_code)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise DocumentTooLarge(response.status_code)
        return Document(response.status_code, bytes(body))
