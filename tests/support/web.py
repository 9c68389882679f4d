"""httpx's clients and request functions for the tests, on one TLS context per process.

httpx builds a new SSL context for every client it makes (``httpx.get`` included), reading the
whole CA bundle each time, and the tests make thousands of clients, nearly all for plain
``http://`` on loopback. These are the same clients and calls with the context made once;
certificates are verified exactly as before. Their connections follow the service's own
outbound rule (``outbound.client.LIMITS``): an idle one is dropped before the service's server
closes it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import httpx

from personal_connectors.outbound.client import LIMITS

TLS = httpx.create_ssl_context()


def client(**options: Any) -> httpx.Client:
    return httpx.Client(verify=TLS, **{"limits": LIMITS, **options})


def async_client(**options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=TLS, **{"limits": LIMITS, **options})


def request(method: str, url: str, **options: Any) -> httpx.Response:
    return httpx.request(method, url, verify=TLS, **options)


def get(url: str, **options: Any) -> httpx.Response:
    return request("GET", url, **options)


def post(url: str, **options: Any) -> httpx.Response:
    return request("POST", url, **options)


def stream(method: str, url: str, **options: Any) -> AbstractContextManager[httpx.Response]:
    return httpx.stream(method, url, verify=TLS, **options)
