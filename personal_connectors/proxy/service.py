"""A proxied call (SPEC §9): the caller's request sent to the connection's API with its
credentials, the provider's answer streamed back.

- Credentials: the values ``api_auth`` is filled from (``credentials.service.credential_values``:
  the connection's fields, and a token fresh by the rules of ``POST /{id}/token``).
- Bodies stream both ways. A request body of at most ``REPLAY_BYTES`` is read first, so it can
  be sent again; a larger one streams through once (its first ``REPLAY_BYTES`` read ahead). An
  answer declaring at most ``WHOLE_ANSWER_BYTES`` is read, then sent whole; others stream.
- A provider 401 forces one refresh (the refresh machinery's single flight, lease and
  compare-and-swap make it one refresh across workers, however many calls saw the 401), then
  the call is sent once more with the new token when its body can be sent again; otherwise the
  401 goes back. A 401 on a token issued less than ``FRESH_TOKEN_SECONDS`` ago goes back at
  once: a caller repeating a call the provider refuses cannot set off a refresh each time.
- 429 and 503 go back with their ``Retry-After``; ``X-Connectors-Retries: N`` sends an
  idempotent call again up to N times, after the provider's ``Retry-After`` (an answer asking
  for more than ``RETRY_AFTER_CAP`` seconds goes back at once).
- ``proxy_timeout_seconds`` bounds each call until the provider's answer starts (504), and each
  wait for the next bytes of a body either way.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from personal_connectors.credentials.service import credential_values
from personal_connectors.exceptions import ProviderError, ProviderUnavailable, ValidationFailed
from personal_connectors.models import OAUTH2_MODE, Connection, utcnow
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.api_auth import MissingCredentialValue, apply_api_auth
from personal_connectors.providers.schema import MINTING_MODES, TEMPLATE_VARIABLE, ProviderEntry
from personal_connectors.proxy import headers as header_rules
from personal_connectors.proxy.exceptions import (
    CredentialsIncomplete,
    NoApiBaseUrl,
    ProviderTimeout,
)
from personal_connectors.proxy.upstream import base_url, check_path, upstream_url
from personal_connectors.runtime import Runtime
from personal_connectors.telemetry.metrics import record_proxy_request
from personal_connectors.tokens.exceptions import ConnectionDisabled, ConnectionNotFound
from personal_connectors.tokens.records import ConnectionLike
from personal_connectors.tokens.repository import TokenRepository
from personal_connectors.tokens.service import TokenRequest

# A body up to this size is kept to be sent again (after a refresh, or a retry).
REPLAY_BYTES = 1024 * 1024
# An answer whose Content-Length is at most this is read whole, then sent in one piece (the
# caller gets it as soon as it has come; no streaming machinery for a typical JSON answer).
WHOLE_ANSWER_BYTES = 64 * 1024
RETRIES_HEADER = "X-Connectors-Retries"
MAX_RETRIES = 5
RETRY_AFTER_CAP = 30.0
RETRIED_STATUSES = frozenset({429, 503})
# A provider 401 on a token issued less than this long ago goes back without a refresh: a new
# token would hardly be received differently, and a caller repeating a call the provider
# refuses must not set off a refresh each time.
FRESH_TOKEN_SECONDS = 60
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


# ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def retries_asked(value: str | None) -> int:
    """``X-Connectors-Retries``: 0 when absent; a whole number 0-5, else 400."""
    if value is None:
        return 0
    if not _WHOLE_NUMBER.fullmatch(value.strip()) or int(value) > MAX_RETRIES:
        raise ValidationFailed.for_fields(
            f"{RETRIES_HEADER} must be a whole number from 0 to {MAX_RETRIES}.", RETRIES_HEADER
        )
    return int(value)


def retry_wait(retry_after: str | None, retry: int) -> float | None:
    """Seconds to wait before retry number ``retry`` (0-based) as the provider's
    ``Retry-After`` asks (seconds or an HTTP date); without one, 0.5 s doubling. None: the
    provider asks for longer than ``RETRY_AFTER_CAP``, so the answer goes back instead."""
    if retry_after is None or not retry_after.strip():
        return float(min(0.5 * 2**retry, RETRY_AFTER_CAP))
    text = retry_after.strip()
    if _WHOLE_NUMBER.fullmatch(text):
        wait = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return float(min(0.5 * 2**retry, RETRY_AFTER_CAP))
        wait = max(0.0, when.timestamp() - time.time())
    return wait if wait <= RETRY_AFTER_CAP else None


def refreshable(entry: ProviderEntry) -> bool:
    """Whether a provider 401 may be cured by a new access token."""
    return entry.auth_mode == "oauth2" or entry.auth_mode in MINTING_MODES


def issued_lately(connection: ConnectionLike, now: datetime) -> bool:
    """Whether the connection's token was issued less than ``FRESH_TOKEN_SECONDS`` ago (by a
    refresh or a mint; a token of unknown age is not)."""
    issued = connection.token_issued_at
    return issued is not None and now - issued < timedelta(seconds=FRESH_TOKEN_SECONDS)


@dataclass
class RequestBody:
    """The caller's body: whole when small enough to send again, else streamed once."""

    replayable: bytes | None = field(repr=False)  # the caller's body: never in a repr
    _head: bytes = field(default=b"", repr=False)
    _rest: AsyncIterator[bytes] | None = None

    @classmethod
    async def take(cls, chunks: AsyncIterator[bytes]) -> RequestBody:
        buffered = bytearray()
        async for chunk in chunks:
            buffered += chunk
            if len(buffered) > REPLAY_BYTES:
                return cls(None, bytes(buffered), chunks)
        return cls(bytes(buffered))

    def content(self) -> bytes | AsyncIterator[bytes]:
        if self.replayable is not None:
            return self.replayable
        rest, self._rest = self._rest, None
        assert rest is not None, "a streamed body is sent once"
        return _chained(self._head, rest)


async def _chained(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


@dataclass
class ProxyCall:
    """What the caller asked for. ``path``: the raw ``{path}``; ``raw_query``: as sent."""

    method: str
    path: str
    raw_query: str
    # The caller's headers hold its key (X-API-Key / Authorization): never in a repr.
    headers: list[tuple[str, str]] = field(repr=False)
    chunks: AsyncIterator[bytes]  # the body, read only once the call is known to be acceptable
    retries: int = 0
    declared_length: str | None = None


@dataclass
class ProviderAnswer:
    """The provider's answer as the caller gets it: ``body`` whole (a small answer, already
    read), or streamed (closing the upstream when done)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes]


class ProxyService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.timeout = runtime.settings.proxy_timeout_seconds

    async def call(self, caller: TokenRequest, call: ProxyCall) -> ProviderAnswer:
        check_path(call.path)
        found = caller.connection
        if found is None:
            raise ConnectionNotFound()
        if not found.is_active:
            raise ConnectionDisabled("The connection is disabled; enable it to call its API.")
        entry = self.runtime.catalog.get(found.app_key)
        if entry is None:
            raise NoApiBaseUrl(found.app_key)
        connection = await self._connection(found, entry)
        base = base_url(
            entry,
            # (a record: the address takes none)
            connection.integration_params if isinstance(connection, Connection) else None,
            connection.provider_metadata,
            loopback_allowed=self.runtime.settings.loopback_allowed,
        )
        values = await credential_values(None, self.runtime, connection)
        body = await RequestBody.take(call.chunks)
        retries = call.retries if call.method in IDEMPOTENT_METHODS else 0
        refreshed = False
        retried = 0
        while True:
            response = await self._send(entry, base, call, body, values)
            if (
                response.status_code == 401
                and not refreshed
                and refreshable(entry)
                and not issued_lately(connection, utcnow())
            ):
                refreshed = True
                # A small answer is read (given back unless the retry happens); a large or
                # unmeasured one is never held in memory: dropped for a retry, else relayed.
                kept = await _read_raw(response) if _small(response) else None
                fresh = await credential_values(None, self.runtime, connection, force_refresh=True)
                if body.replayable is not None and fresh != values:
                    await response.aclose()
                    values = fresh
                    continue
                headers = header_rules.to_caller(_raw(response))
                answer = _once(kept) if kept is not None else _relay(response)
                return ProviderAnswer(401, headers, answer)
            if (
                response.status_code in RETRIED_STATUSES
                and retried < retries
                and body.replayable is not None
            ):
                wait = retry_wait(response.headers.get("retry-after"), retried)
                if wait is not None:
                    await response.aclose()
                    retried += 1
                    await asyncio.sleep(wait)
                    continue
            headers = header_rules.to_caller(_raw(response))
            if _small(response):
                return ProviderAnswer(response.status_code, headers, await _read_raw(response))
            return ProviderAnswer(response.status_code, headers, _relay(response))

    async def _connection(self, found: ConnectionLike, entry: ProviderEntry) -> ConnectionLike:
        """The caller's connection as the call needs it: the token lookup's record (its token
        and provider metadata) for an OAuth connection whose API address takes no integration
        param; else the whole row (its credentials fields, its integration params)."""
        if found.auth_mode == OAUTH2_MODE and not _reads_integration_params(entry):
            return found
        async with self.runtime.sessions() as session:
            connection = await TokenRepository.row_of(session, found)
        if connection is None:  # deleted since
            raise ConnectionNotFound()
        return connection

    async def _send(
        self,
        entry: ProviderEntry,
        base: str,
        call: ProxyCall,
        body: RequestBody,
        values: dict[str, str],
    ) -> httpx.Response:
        try:
            credentials = apply_api_auth(entry.api_auth, values)
        except MissingCredentialValue:
            raise CredentialsIncomplete() from None
        url = upstream_url(base, call.path, call.raw_query, credentials.query)
        sent = header_rules.to_provider(call.headers, credentials.headers)
        content = body.content()
        if not isinstance(content, bytes) and call.declared_length is not None:
            sent.append(("Content-Length", call.declared_length))  # else chunked
        client = self.runtime.http
        request = client.plain_request(
            call.method, url, headers=sent, content=content, call_seconds=self.timeout
        )
        # Each request sent to the provider is counted: its status, or why there was none.
        started = time.perf_counter()
        outcome: int | str = "error"
        try:
            async with asyncio.timeout(self.timeout):
                response = await client.send_streamed(request)
            outcome = response.status_code
            return response
        except (TimeoutError, httpx.TimeoutException):
            outcome = "timeout"
            raise ProviderTimeout(
                f"The provider did not answer within {self.timeout:g} seconds."
            ) from None
        except DestinationRefused as exc:
            outcome = "refused"
            raise ProviderError(
                f"The provider's API address is not an allowed destination: {exc.reason}."
            ) from None
        except (httpx.ConnectError, httpx.ReadError, httpx.WriteError):
            outcome = "unreachable"
            raise ProviderUnavailable(
                "The provider's API could not be reached.", headers={"Retry-After": "5"}
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                f"The provider's API answered with something unusable ({type(exc).__name__})."
            ) from None
        finally:
            record_proxy_request(entry.key, outcome, time.perf_counter() - started)


def _reads_integration_params(entry: ProviderEntry) -> bool:
    """Whether the entry's API address is filled from integration params (the variables that
    are not provider metadata)."""
    variables = TEMPLATE_VARIABLE.findall(entry.api_base_url or "")
    return any(name not in entry.metadata_patterns for name in variables)


def _raw(response: httpx.Response) -> Iterable[tuple[str, str]]:
    return (
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw
    )


async def _read_raw(response: httpx.Response) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    except httpx.TransportError:
        raise ProviderUnavailable(
            "The provider's API broke off its answer.", headers={"Retry-After": "5"}
        ) from None
    finally:
        await response.aclose()


def _small(response: httpx.Response) -> bool:
    """Whether the answer declares a length of at most ``WHOLE_ANSWER_BYTES``."""
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= WHOLE_ANSWER_BYTES


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as the provider sends it (still encoded), each read bounded by the timeout."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()
