"""httpx's clients and request functions for the tests, on one TLS context per process.

httpx builds a new SSL context for every client it makes (``httpx.get`` included), reading the
whole CA bundle each time, and the tests make thousands of clients, nearly all for plain
``http://`` on loopback. These are the same clients and calls with the context made once;
certificates are verified exactly as before.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import httpx

TLS = httpx.create_ssl_context()
# Idle connections are dropped before the 5 s after which the service (uvicorn) closes them,
# as the service's own outbound client does (outbound/client.py); otherwise httpx's defaults.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=4.0)


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
