"""Service configuration, read from the environment and a `.env` file in the working folder.

The server and every CLI command build the same ``Settings``, so a value written in `.env`
(the providers file, the port, the public URL) is seen by both. Every variable is prefixed
with ``CONNECTORS_``; docs/configuration.md lists them all.
"""

from __future__ import annotations

import re
from functools import cached_property
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import ada_url
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

API_PREFIX = "/v1/personal-connectors"
ENV_PREFIX = "CONNECTORS_"


def origin_of(url: str) -> str:
    """The origin of a URL as browsers compute it (WHATWG URL, via ada): lower-cased scheme and
    host, default ports dropped, IPv6 in brackets; ``null`` for a non-http(s) URL. Raises
    ValueError for a URL a browser would not parse."""
    return str(ada_url.URL(url).origin)


# A rate limit as `limits` (rate_limits/) parses it: N per [M] second|minute|hour|day (plurals).
RATE_LIMIT_PATTERN = re.compile(
    r"[1-9][0-9]{0,9}\s*(?:/|per)\s*(?:[1-9][0-9]{0,5}\s+)?(?:second|minute|hour|day)s?",
    re.IGNORECASE,
)
RATE_LIMIT_STORAGE_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = None
    data_dir: Path = Path("data")
    # Where `connectors serve` listens unless --host/--port say otherwise.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # The public URL providers send users back to; unset, the listening address (see below).
    base_url: str = "http://127.0.0.1:8080"
    encryption_keys: str | None = None
    providers_file: Path | None = None
    allowed_return_origins: str | None = None

    # Beyond SPEC §5: tuning knobs with safe defaults.
    log_level: str = "INFO"
    # Operations (SPEC §12; telemetry/): one JSON object a log line instead of text; the bearer
    # token `/metrics` asks for (open without one); how often gauges that are read rather than
    # counted (database pools) are sampled.
    log_format: Literal["text", "json"] = "text"
    metrics_token: SecretStr | None = None
    metrics_sample_seconds: float = Field(default=5.0, gt=0, le=3600)
    flow_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    # Per user: flows waiting for their callback, and connect sessions still valid (429 beyond).
    max_pending_flows: int = Field(default=20, ge=1, le=10_000)
    max_connect_sessions: int = Field(default=20, ge=1, le=10_000)
    provider_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    revocation_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Token exchange: a trusted issuer's key set is fetched again for an unknown key id at most
    # this often (oauth/rfc7517.py).
    jwks_refetch_seconds: float = Field(default=30.0, ge=0, le=3600)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    refresh_retry_seconds: float = Field(default=8.0, gt=0, le=60)
    # A refresh's two clocks (tokens/refresh.py): how long a caller waits for it, and how long
    # the request to the provider may take, which goes on after its caller stopped waiting.
    refresh_wait_seconds: float = Field(default=10.0, gt=0, le=120)
    refresh_request_seconds: float = Field(default=60.0, gt=0, le=600)
    # Renewed every third of its life while its holder lives (tokens/lease.py).
    refresh_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    # How often the batched token-issued audit writer inserts what it queued (events/audit.py).
    token_audit_flush_seconds: float = Field(default=1.0, gt=0, le=3600)
    # PostgreSQL connections of the token hot path's reader (storage.driver.PostgresReader):
    # about the number of token requests one worker serves at once.
    hot_read_pool_size: int = Field(default=32, ge=1, le=256)
    # The background refresher (refresher/): `connectors refresher`, or inside `serve` when on.
    refresher_embedded: bool = False
    refresher_window_seconds: float = Field(default=600.0, ge=0, le=86400)
    refresher_idle_seconds: float = Field(default=86400.0, ge=60, le=30 * 86400)
    refresher_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    refresher_concurrency: int = Field(default=16, ge=1, le=256)
    refresher_provider_concurrency: int = Field(default=8, ge=1, le=256)
    # Every outbound call (providers, discovery, revocation, webhooks) is https to public
    # addresses only (outbound/guard.py); true allows plain http and loopback, private and
    # link-local destinations too: development and tests, never production.
    outbound_allow_internal: bool = False
    # Narrower: plain http to this machine's loopback (`127.0.0.1`, `[::1]`, `localhost`) and
    # nothing else internal (SPEC §9's outbound rule); development and tests.
    allow_http_loopback: bool = False
    # Narrower still: the same, for webhook deliveries (and their registration) only; every
    # other call keeps the rule (``allow_http_loopback`` includes it).
    webhook_allow_http_loopback: bool = False
    # The proxy (proxy/): the largest request body it forwards (413 beyond), and how long a call
    # to the provider may take until its answer starts (504 beyond).
    proxy_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    proxy_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # The HTTP server (http/server.py): how long a client may take to send a request's headers (from
    # connecting, or from the first byte of the next request), how long an idle keep-alive
    # connection stays open, how large a request's line and headers may be (431 beyond), and how
    # many connections and requests one worker holds at once (503 beyond).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    http_max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    http_max_concurrency: int = Field(default=1000, ge=1, le=100_000)
    # complete-oauth?wait=N (flows/service.py): how often a process that has waiting calls reads
    # the database for flows another process finished (one query for all its waiters).
    complete_wait_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    # How long a connection's MCP tool list is kept before its server is asked again
    # (mcp_servers/; SPEC §11); a change to the connection drops it sooner.
    mcp_tools_ttl_seconds: float = Field(default=600.0, ge=0, le=86400)
    # How long one tools/call through the MCP gateway may take at the connection's server.
    mcp_call_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # Webhooks (see webhooks/).
    webhook_worker: bool = True  # deliver from inside `serve`; off for a separate worker
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Seconds before each retry; attempts = retries + 1. Jitter adds up to 10% to each.
    webhook_retry_schedule: str = "5,30,120,600,3600,21600"
    # Rate limits (SPEC §12, rate_limits/): a limit such as `1200/minute` per user key and per
    # (service key, end user); a cap on a service key's requests for all its end users; where
    # they are counted (unset: in each process's memory; a redis:// URL: shared by all).
    rate_limit: str | None = None
    rate_limit_service: str | None = None
    rate_limit_storage: str | None = None
    # Retention of the audit trail (events/retention.py), in days; 0 keeps events forever.
    event_retention_days: int = Field(default=90, ge=0, le=36500)
    token_event_retention_days: int = Field(default=7, ge=0, le=36500)

    @model_validator(mode="before")
    @classmethod
    def _default_base_url(cls, data: Any) -> Any:
        """Without CONNECTORS_BASE_URL the public URL is the listening address itself."""
        if isinstance(data, dict) and data.get("base_url") is None:
            host = str(data.get("host") or cls.model_fields["host"].default)
            port = data.get("port") or cls.model_fields["port"].default
            return {**data, "base_url": f"http://{_url_host(host)}:{port}"}
        return data

    @field_validator("base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"} or not ada_url.check_url(value):
            raise ValueError("must be an http(s) URL a browser can parse")
        return value.rstrip("/")

    @field_validator("metrics_token")
    @classmethod
    def _blank_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """CONNECTORS_METRICS_TOKEN= (empty) leaves /metrics open, as unset does."""
        return value if value is not None and value.get_secret_value() else None

    @field_validator("allowed_return_origins")
    @classmethod
    def _check_return_origins(cls, value: str | None) -> str | None:
        for item in (value or "").split(","):
            if item.strip() and not item.strip().lower().startswith(("http://", "https://")):
                raise ValueError("CONNECTORS_ALLOWED_RETURN_ORIGINS lists http(s) origins only")
            if item.strip() and not ada_url.check_url(item.strip()):
                raise ValueError("CONNECTORS_ALLOWED_RETURN_ORIGINS lists one that is no URL")
        return value

    @property
    def is_embedded(self) -> bool:
        """True when running on the default SQLite file (nothing configured)."""
        return self.database_url is None

    @property
    def embedded_database(self) -> Path:
        """The SQLite file used when no CONNECTORS_DATABASE_URL is set."""
        return (self.data_dir / "connectors.db").resolve()

    @cached_property
    def sqlalchemy_url(self) -> str:
        """Translate the plain URL operators write into the async driver URL SQLAlchemy needs."""
        url = self.database_url or f"sqlite:///{self.embedded_database}"
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            return url
        raise ValueError("CONNECTORS_DATABASE_URL must be a sqlite:/// or postgresql:// URL")

    @property
    def refresh_bound_seconds(self) -> float:
        """The longest a refresh runs once it holds its lease: retries of what never reached
        the provider, its request, and one more after an outcome it never heard."""
        return self.refresh_retry_seconds + 2 * self.refresh_request_seconds

    @property
    def loopback_allowed(self) -> bool:
        """Whether an outbound call may go to this machine's loopback over plain http."""
        return self.outbound_allow_internal or self.allow_http_loopback

    @property
    def webhook_loopback_allowed(self) -> bool:
        """Whether a webhook may be delivered to this machine's loopback over plain http."""
        return self.loopback_allowed or self.webhook_allow_http_loopback

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}{API_PREFIX}/callback"

    @cached_property
    def return_origins(self) -> frozenset[str]:
        if not self.allowed_return_origins:
            return frozenset({origin_of(self.base_url)})
        return frozenset(
            origin_of(item.strip())
            for item in self.allowed_return_origins.split(",")
            if item.strip()
        )

    def connect_base(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_retry_schedule(cls, value: str) -> str:
        delays = [item.strip() for item in value.split(",") if item.strip()]
        if not 0 < len(delays) <= 20 or any(not 0 < float(item) <= 7 * 86400 for item in delays):
            raise ValueError("a comma-separated list of 1-20 delays in seconds, each up to 7 days")
        return value

    @field_validator("rate_limit", "rate_limit_service")
    @classmethod
    def _check_rate_limit(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if RATE_LIMIT_PATTERN.fullmatch(value.strip()) is None:
            raise ValueError(
                "must be a number of requests per period, such as `1200/minute`, `20/second` "
                "or `50000/hour` (periods: second, minute, hour, day; `10/5 minutes` also works)"
            )
        return value.strip()

    @field_validator("rate_limit_storage")
    @classmethod
    def _check_rate_limit_storage(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value != "memory://" and urlsplit(value).scheme not in RATE_LIMIT_STORAGE_SCHEMES:
            raise ValueError(
                "must be a Redis URL (redis://host:6379/0, rediss:// for TLS, "
                "redis+unix:///path/to/socket), or memory:// (the default: each process counts "
                "for itself)"
            )
        return value

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(item) for item in self.webhook_retry_schedule.split(",") if item.strip())


_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (recognised, not bound)
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _url_host(host: str) -> str:
    """The host as written in a URL: a wildcard becomes loopback, IPv6 gets brackets."""
    if host in _WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_mismatch(settings: Settings, host: str, port: int) -> str | None:
    """Why the public URL cannot reach a server listening on ``host:port``, or None.

    Only a base URL on this machine's loopback (or on the listening host itself) is judged:
    a public name is usually a reverse proxy in front, whose port need not match.
    """
    parts = urlsplit(settings.base_url)
    url_host = (parts.hostname or "").lower()
    url_port = parts.port or (443 if parts.scheme == "https" else 80)
    listening = host.lower().strip("[]")
    if not (_is_loopback(url_host) or url_host == listening):
        return None
    reachable = (
        listening in _WILDCARD_HOSTS
        or listening == url_host
        or (_is_loopback(listening) and _is_loopback(url_host))
    )
    if url_port == port and reachable:
        return None
    return (
        f"CONNECTORS_BASE_URL is {settings.base_url} but the service listens on "
        f"{_url_host(listening)}:{port}: providers would send users back to "
        f"{settings.redirect_uri}. Set CONNECTORS_BASE_URL to the URL that reaches this "
        "server (or leave it unset to use the listening address)."
    )


def get_settings() -> Settings:
    return Settings()


class ConfigurationError(ValueError):
    """Settings that cannot be used; the message names each variable at fault and why."""


def describe_settings_error(error: ValidationError) -> str:
    """One line per problem, naming the environment variable (``CONNECTORS_FLOW_TTL_SECONDS``)
    an operator sets, not the field it fills. Values are never repeated: one may be a secret."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "the configuration"
        lines.append(f"{variable}: {item['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def load_settings() -> Settings:
    """The settings from the environment and ``.env``; ConfigurationError when unusable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_settings_error(exc)) from None
