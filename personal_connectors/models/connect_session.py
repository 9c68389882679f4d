"""A connect session: a short-lived link that lets one user manage their connections on the
hosted connect page, without ever holding an API key in the browser."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, id_column, utcnow


class ConnectSession(Base):
    __tablename__ = "connect_sessions"
    # The per-user bound on live connect sessions counts through this index.
    __table_args__ = (Index("ix_connect_sessions_user", "user_id", "expires_at"),)

    id: Mapped[str] = id_column()
    # SHA-256 of the `cs_…` token: the token is shown once and only ever recognised.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The API key that created the session: the page acts as that key's principal.
    api_key_id: Mapped[str] = mapped_column(String(40))
    # None: every configured connector; otherwise only these catalog keys.
    allowed_connectors: Mapped[list[str] | None]
    return_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
