"""Organizations, users, their memberships and the API keys users authenticate with."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, TimestampedMixin, id_column, utcnow


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


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
    email: Mapped[str] = mapped_column(String(320), unique=True)
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
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(20), default=APIKeyStatus.ACTIVE)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
