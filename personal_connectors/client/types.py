"""What the client's calls return: plain dataclasses read from the service's JSON answers.

Each type reads the fields it knows and ignores the rest, so a newer service with more fields
still works with this client. Secrets (access tokens, credentials) are left out of ``repr`` so
that a logged object never carries one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time of the service (``…Z`` or with an offset); None when absent."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value))


def _time(value: Any) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("a required time is missing from the service's answer")
    return parsed


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


@dataclass(frozen=True)
class Connection:
    """One connected account (``GET /``, ``GET /{id}``)."""

    id: str
    app_key: str
    connector_type: str
    account_id: str
    account_email: str | None
    account_name: str | None
    status: str
    is_active: bool
    scopes: list[str]
    expires_at: datetime | None
    last_sync_at: datetime | None
    created_at: datetime
    updated_at: datetime
    end_user_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    provider_metadata: dict[str, str] = field(default_factory=dict)
    mcp_configuration_id: str | None = None
    # A custom MCP server's connection (``custom_mcp``): its server and name.
    mcp_server_url: str | None = None
    display_name: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Connection:
        return cls(
            id=data["id"],
            app_key=data["app_key"],
            connector_type=data.get("connector_type", data["app_key"]),
            account_id=data["account_id"],
            account_email=data.get("account_email"),
            account_name=data.get("account_name"),
            status=data["status"],
            is_active=data["is_active"],
            scopes=list(data.get("scopes") or []),
            expires_at=parse_time(data.get("expires_at")),
            last_sync_at=parse_time(data.get("last_sync_at")),
            created_at=_time(data["created_at"]),
            updated_at=_time(data["updated_at"]),
            end_user_id=data.get("end_user_id"),
            tags=_strings(data.get("tags")),
            metadata=dict(data.get("metadata") or {}),
            provider_metadata=_strings(data.get("provider_metadata")),
            mcp_configuration_id=data.get("mcp_configuration_id"),
            mcp_server_url=data.get("mcp_server_url"),
            display_name=data.get("display_name"),
        )


@dataclass(frozen=True)
class Token:
    """A connection's current access token (``POST /{id}/token``).

    ``auth_mode`` and ``credentials`` come from connections that are not OAuth authorization
    code grants (SPEC §10): for ``api_key`` and ``basic`` connections ``access_token`` is None
    and ``credentials`` holds the declared fields. Both are None from a service that does not
    send them.
    """

    access_token: str | None = field(repr=False)
    token_type: str | None
    expires_at: datetime | None
    scopes: list[str]
    connection_id: str
    app_key: str
    provider_metadata: dict[str, str] = field(default_factory=dict)
    auth_mode: str | None = None
    credentials: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Token:
        credentials = data.get("credentials")
        return cls(
            access_token=data.get("access_token"),
            token_type=data.get("token_type"),
            expires_at=parse_time(data.get("expires_at")),
            scopes=list(data.get("scopes") or []),
            connection_id=data["connection_id"],
            app_key=data["app_key"],
            provider_metadata=_strings(data.get("provider_metadata")),
            auth_mode=data.get("auth_mode"),
            credentials=dict(credentials) if credentials is not None else None,
        )


@dataclass(frozen=True)
class Authorization:
    """A started flow (``POST /authorize``): send the person to ``launch_url`` (or, for a
    service without it, ``authorization_url``); the device flow fills the ``user_code`` group."""

    authorization_url: str
    state_token: str
    expires_at: datetime
    launch_url: str | None = None
    user_code: str | None = None
    verification_uri: str | None = None
    verification_uri_complete: str | None = None
    interval: int | None = None

    @property
    def url(self) -> str:
        """Where to send the person: the launch URL when the service gives one."""
        return self.launch_url or self.authorization_url

    @classmethod
    def of(cls, data: dict[str, Any]) -> Authorization:
        return cls(
            authorization_url=data["authorization_url"],
            state_token=data.get("state_token") or data["state"],
            expires_at=_time(data["expires_at"]),
            launch_url=data.get("launch_url"),
            user_code=data.get("user_code"),
            verification_uri=data.get("verification_uri"),
            verification_uri_complete=data.get("verification_uri_complete"),
            interval=data.get("interval"),
        )


@dataclass(frozen=True)
class ConnectionSummary:
    id: str
    app_key: str
    status: str


@dataclass(frozen=True)
class FlowError:
    code: str
    description: str | None


@dataclass(frozen=True)
class Completion:
    """A flow's outcome (``POST /complete-oauth``): ``connected`` with its ``connection``, not
    yet (``connected`` false, no ``error``), or refused (``error``)."""

    connected: bool
    connection: ConnectionSummary | None
    message: str
    error: FlowError | None = None
    retry_after: int | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Completion:
        summary, error = data.get("connection"), data.get("error")
        return cls(
            connected=bool(data["connected"]),
            connection=ConnectionSummary(summary["id"], summary["app_key"], summary["status"])
            if summary
            else None,
            message=data.get("message", ""),
            error=FlowError(error["code"], error.get("description")) if error else None,
            retry_after=data.get("retry_after"),
        )


@dataclass(frozen=True)
class EndUser:
    """One of the platform's users (``/end-users``, SPEC §8)."""

    id: str
    email: str | None
    display_name: str | None
    tags: dict[str, str]
    connection_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, data: dict[str, Any]) -> EndUser:
        return cls(
            id=data["id"],
            email=data.get("email"),
            display_name=data.get("display_name"),
            tags=_strings(data.get("tags")),
            connection_count=int(data.get("connection_count") or 0),
            created_at=_time(data["created_at"]),
            updated_at=_time(data["updated_at"]),
        )


@dataclass(frozen=True)
class TestResult:
    """The provider's read-only check call made with the connection's token
    (``POST /{id}/test``)."""

    __test__ = False  # not a pytest test class, whatever its name

    success: bool
    action_tested: str
    message: str
    execution_time_ms: int | None
    tested_at: datetime
    connection_id: str
    tool_key: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            success=bool(data["success"]),
            action_tested=data.get("action_tested", ""),
            message=data.get("message", ""),
            execution_time_ms=data.get("execution_time_ms"),
            tested_at=_time(data["tested_at"]),
            connection_id=data["credential_id"],
            tool_key=data["tool_key"],
        )


@dataclass(frozen=True)
class Health:
    """What the service last knew of the connection (``GET /{id}/health``)."""

    status: str  # healthy, unhealthy or unknown
    is_active: bool
    connection_status: str
    reason: str | None
    last_checked_at: datetime | None
    connection_id: str
    tool_key: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> Health:
        return cls(
            status=data["status"],
            is_active=bool(data["is_active"]),
            connection_status=data["connection_status"],
            reason=data.get("reason"),
            last_checked_at=parse_time(data.get("last_checked_at")),
            connection_id=data["credential_id"],
            tool_key=data["tool_key"],
        )
