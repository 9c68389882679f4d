"""Identity providers an organization trusts to name its end users (RFC 8693 token exchange)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, id_column, utcnow


class TrustedIssuer(Base):
    """An issuer whose signed JWTs stand for an end user of the organization: the JWT's
    ``subject_claim``, after ``end_user_prefix``, is the ``end_user_id``."""

    __tablename__ = "trusted_issuers"
    __table_args__ = (UniqueConstraint("organization_id", "issuer"),)

    id: Mapped[str] = id_column()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    issuer: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(500))
    jwks_uri: Mapped[str | None] = mapped_column(Text)  # None: from the issuer's discovery
    subject_claim: Mapped[str] = mapped_column(String(100), default="sub")
    end_user_prefix: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
