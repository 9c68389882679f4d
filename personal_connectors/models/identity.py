"""Organizations, users, their memberships, the API keys callers authenticate with, and the
end users a platform's service key acts for (SPEC §8)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, TimestampedMixin, id_column, utcnow


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    # The internal user of an end user (``EndUser``): owns its connections, administers nothing.
    END_USER = "end_user"


class KeyKind(StrEnum):
    """Who an API key acts for (SPEC §8)."""

    USER = "user"  # its user
    SERVICE = "service"  # its organization's end users, named per request with ``end_user_id``
    EXCHANGE = "exchange"  # its organization's end users, through the token exchange only


class APIKeyStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DEACTIVATED = "deactivated"


class Organization(TimestampedMixin, Base):
    __tablename__ = "organizations"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    # The callback refuses flows that were not launched in a browser (flows/binding.py).
    require_launched_flows: Mapped[bool] = mapped_column(default=False, server_default=false())


class User(TimestampedMixin, Base):
    __tablename__ = "users"

    id: Mapped[str] = id_column()
    # None for the internal user of an end user (whose email, if any, is on ``EndUser``).
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    id: Mapped[str] = id_column()
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default=Role.MEMBER)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class APIKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(20), default=KeyKind.USER, server_default="user")
    # A user key's user; None for service and exchange keys, which belong to an organization.
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(20), default=APIKeyStatus.ACTIVE)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class EndUser(TimestampedMixin, Base):
    """A platform's user, named by the platform's own id (``external_id``, the ``end_user_id``
    of SPEC §8) within one organization. Its ``user_id`` is an internal user (a member with role
    ``end_user``) that owns its flows, connect sessions and connections as a member owns theirs,
    so every ownership rule applies to end users unchanged."""

    __tablename__ = "end_users"
    __table_args__ = (UniqueConstraint("organization_id", "external_id"),)

    id: Mapped[str] = id_column()
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
