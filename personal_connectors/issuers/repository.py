"""Database access for trusted issuers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import TrustedIssuer


class TrustedIssuerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_for(self, organization_id: str) -> Sequence[TrustedIssuer]:
        statement = (
            select(TrustedIssuer)
            .where(TrustedIssuer.organization_id == organization_id)
            .order_by(TrustedIssuer.created_at, TrustedIssuer.id)
        )
        return (await self.session.scalars(statement)).all()

    async def get(self, organization_id: str, issuer_id: str) -> TrustedIssuer | None:
        statement = select(TrustedIssuer).where(
            TrustedIssuer.id == issuer_id, TrustedIssuer.organization_id == organization_id
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def by_issuer(self, organization_id: str, issuer: str) -> TrustedIssuer | None:
        statement = select(TrustedIssuer).where(
            TrustedIssuer.organization_id == organization_id, TrustedIssuer.issuer == issuer
        )
        return (await self.session.scalars(statement)).one_or_none()

    def add(self, row: TrustedIssuer) -> None:
        self.session.add(row)

    async def delete(self, row: TrustedIssuer) -> None:
        await self.session.delete(row)
