"""Which issuers an organization trusts, and the rules that keep their end users apart.

When an organization trusts several issuers, each needs its own ``end_user_prefix`` and no
prefix may start another: ``"a|"`` + ``"b1"`` and ``"a|b"`` + ``"1"`` would otherwise name the
same end user from two identity providers.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import Settings
from personal_connectors.exceptions import ValidationFailed
from personal_connectors.issuers.exceptions import (
    IssuerAlreadyTrusted,
    TooManyIssuers,
    TrustedIssuerNotFound,
)
from personal_connectors.issuers.repository import TrustedIssuerRepository
from personal_connectors.issuers.schemas import TrustedIssuerIn
from personal_connectors.models import TrustedIssuer, new_id
from personal_connectors.outbound.urls import check_url

MAX_ISSUERS_PER_ORGANIZATION = 20


class TrustedIssuerService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.repository = TrustedIssuerRepository(session)

    async def create(self, organization_id: str, body: TrustedIssuerIn) -> TrustedIssuer:
        allow_internal = self.settings.loopback_allowed
        check_url(body.issuer, allow_internal=allow_internal, field="issuer")
        jwks_uri = body.jwks_uri
        if jwks_uri is not None:
            jwks_uri = check_url(jwks_uri, allow_internal=allow_internal, field="jwks_uri")
        existing = await self.repository.list_for(organization_id)
        if any(row.issuer == body.issuer for row in existing):
            raise IssuerAlreadyTrusted()
        if len(existing) >= MAX_ISSUERS_PER_ORGANIZATION:
            raise TooManyIssuers()
        _check_prefixes(existing, body.end_user_prefix)
        row = TrustedIssuer(
            id=new_id("tis"),
            organization_id=organization_id,
            issuer=body.issuer,  # as the tokens' iss reads, byte for byte
            audience=body.audience,
            jwks_uri=jwks_uri,
            subject_claim=body.subject_claim,
            end_user_prefix=body.end_user_prefix,
        )
        self.repository.add(row)
        await self.session.commit()
        return row

    async def list_for(self, organization_id: str) -> Sequence[TrustedIssuer]:
        return await self.repository.list_for(organization_id)

    async def get(self, organization_id: str, issuer_id: str) -> TrustedIssuer:
        row = await self.repository.get(organization_id, issuer_id)
        if row is None:
            raise TrustedIssuerNotFound()
        return row

    async def delete(self, organization_id: str, issuer_id: str) -> None:
        await self.repository.delete(await self.get(organization_id, issuer_id))
        await self.session.commit()


def _check_prefixes(existing: Sequence[TrustedIssuer], prefix: str | None) -> None:
    if not existing:
        return
    if prefix is None or any(row.end_user_prefix is None for row in existing):
        raise ValidationFailed.for_fields(
            "An organization that trusts more than one issuer needs an end_user_prefix on each "
            "(delete and add again an issuer trusted without one).",
            "end_user_prefix",
        )
    for row in existing:
        other = row.end_user_prefix
        assert other is not None
        if prefix.startswith(other) or other.startswith(prefix):
            raise ValidationFailed.for_fields(
                f"The end_user_prefix must not start another issuer's or be the start of one "
                f"(an issuer already has {other!r}).",
                "end_user_prefix",
            )
