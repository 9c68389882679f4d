"""OAuth client registrations: one service-wide per provider, optionally one per organization."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, TimestampedMixin, id_column


class OAuthApp(TimestampedMixin, Base):
    __tablename__ = "oauth_apps"
    __table_args__ = (
        # One app per (organization, provider), and one service-wide app (NULL org) per provider.
        Index(
            "uq_oauth_apps_org_app_key",
            "organization_id",
            "app_key",
            unique=True,
            postgresql_where=text("organization_id IS NOT NULL"),
            sqlite_where=text("organization_id IS NOT NULL"),
        ),
        Index(
            "uq_oauth_apps_global_app_key",
            "app_key",
            unique=True,
            postgresql_where=text("organization_id IS NULL"),
            sqlite_where=text("organization_id IS NULL"),
        ),
    )

    id: Mapped[str] = id_column()
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    app_key: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str] | None]
    # Values of the entry's admin-set integration_params (providers.schema.IntegrationParam).
    integration_params: Mapped[dict[str, Any] | None]
