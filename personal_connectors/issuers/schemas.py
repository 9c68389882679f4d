"""API shapes of trusted issuers (SPEC §8, token exchange)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from personal_connectors.http.schemas import RequestBody
from personal_connectors.identity.service import END_USER_CHARACTERS
from personal_connectors.models import TrustedIssuer

# A prefix is the start of an end_user_id: the same characters (SPEC §8).
PREFIX_PATTERN = f"^[{END_USER_CHARACTERS}]+$"


class TrustedIssuerIn(RequestBody):
    issuer: str = Field(
        min_length=1, max_length=2000, description="Exactly as the JWTs' `iss` claim reads."
    )
    audience: str = Field(
        min_length=1, max_length=500, description="The `aud` the JWTs must carry."
    )
    jwks_uri: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the issuer publishes its keys; else read from its OpenID discovery.",
    )
    subject_claim: str = Field(
        default="sub", min_length=1, max_length=100, description="The claim naming the user."
    )
    end_user_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=PREFIX_PATTERN,
        description="Put before the subject to make the end_user_id; required, and no prefix "
        "of another's, when the organization trusts more than one issuer.",
    )


class TrustedIssuerOut(BaseModel):
    id: str
    issuer: str
    audience: str
    jwks_uri: str | None
    subject_claim: str
    end_user_prefix: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: TrustedIssuer) -> TrustedIssuerOut:
        return cls(
            id=row.id,
            issuer=row.issuer,
            audience=row.audience,
            jwks_uri=row.jwks_uri,
            subject_claim=row.subject_claim,
            end_user_prefix=row.end_user_prefix,
            created_at=row.created_at,
        )


class ExchangedTokenOut(BaseModel):
    """RFC 8693 §2.2.1."""

    access_token: str
    issued_token_type: str
    token_type: str
    expires_in: int | None = None


class OAuthErrorOut(BaseModel):
    """RFC 6749 §5.2 (OAuth clients read these, not the service's envelope)."""

    error: str
    error_description: str | None = None


# The token exchange's form (RFC 8693 §2.1), for the OpenAPI document.
EXCHANGE_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["grant_type", "subject_token", "subject_token_type"],
                "properties": {
                    "grant_type": {
                        "type": "string",
                        "enum": ["urn:ietf:params:oauth:grant-type:token-exchange"],
                    },
                    "subject_token": {"type": "string", "description": "The end user's JWT."},
                    "subject_token_type": {
                        "type": "string",
                        "enum": [
                            "urn:ietf:params:oauth:token-type:jwt",
                            "urn:ietf:params:oauth:token-type:id_token",
                        ],
                    },
                    "resource": {
                        "type": "string",
                        "description": "A connection: `conn_…` or its absolute URL.",
                    },
                    "audience": {
                        "type": "string",
                        "description": "An app key (the end user's one connection of it), or "
                        "`personal-connectors` for a 5-minute `pct_` token of this service.",
                    },
                },
            }
        }
    },
}
