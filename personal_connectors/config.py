"""Service configuration, read once from the environment (and a `.env` file in the working folder).

Every variable is prefixed with ``CONNECTORS_``; see SPEC §5 and the README for the full table.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

API_PREFIX = "/v1/personal-connectors"


def origin_of(url: str) -> str:
    """The RFC 6454 origin of a URL, lower-cased scheme and host, default ports dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in {("http", 80), ("https", 443)}:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONNECTORS_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = None
    data_dir: Path = Path("data")
    base_url: str = "http://127.0.0.1:8080"
    encryption_keys: str | None = None
    providers_file: Path | None = None
    allowed_return_origins: str | None = None

    # Beyond SPEC §5: tuning knobs with safe defaults.
    log_level: str = "INFO"
    flow_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    provider_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    revocation_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    refresh_retry_seconds: float = Field(default=8.0, gt=0, le=60)
    # A refresh's two clocks (tokens/refresh.py): how long a caller waits for it, and how long
    # the request to the provider may take, which goes on after its caller stopped waiting.
    refresh_wait_seconds: float = Field(default=10.0, gt=0, le=120)
    refresh_request_seconds: float = Field(default=60.0, gt=0, le=600)
    # Renewed every third of its life while its holder lives (tokens/lease.py).
    refresh_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    # How often the batched token-issued audit writer inserts what it queued (tokens/audit.py).
    token_audit_flush_seconds: float = Field(default=1.0, gt=0, le=3600)
    # PostgreSQL connections of the token hot path's reader (storage.hot_reader.PostgresHotReader):
    # about the number of token requests one worker serves at once.
    hot_read_pool_size: int = Field(default=32, ge=1, le=256)
    # The background refresher (refresher/): `connectors refresher`, or inside `serve` when on.
    refresher_embedded: bool = False
    refresher_window_seconds: float = Field(default=600.0, ge=0, le=86400)
    refresher_idle_seconds: float = Field(default=86400.0, ge=60, le=30 * 86400)
    refresher_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    refresher_concurrency: int = Field(default=16, ge=1, le=256)
    refresher_provider_concurrency: int = Field(default=8, ge=1, le=256)
    # Webhooks (see webhooks/): plain http only to loopback, and only when allowed (development).
    webhook_allow_http_loopback: bool = False
    webhook_worker: bool = True  # deliver from inside `serve`; off for a separate worker
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Seconds before each retry; attempts = retries + 1. Jitter adds up to 10% to each.
    webhook_retry_schedule: str = "5,30,120,600,3600,21600"

    @field_validator("base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("CONNECTORS_BASE_URL must be an http(s) URL")
        return value.rstrip("/")

    @property
    def is_embedded(self) -> bool:
        """True when running on the default SQLite file (nothing configured)."""
        return self.database_url is None

    @cached_property
    def sqlalchemy_url(self) -> str:
        """Translate the plain URL operators write into the async driver URL SQLAlchemy needs."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'connectors.db').resolve()}"
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

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(item) for item in self.webhook_retry_schedule.split(",") if item.strip())


def get_settings() -> Settings:
    return Settings()
