"""HTTP routes of the issuers an organization trusts (owners and admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

from personal_connectors.config import API_PREFIX
from personal_connectors.http.context import add_response_headers
from personal_connectors.http.dependencies import AdminAccessDep, RuntimeDep, SessionDep
from personal_connectors.http.forms import FormError, read_form
from personal_connectors.http.openapi import errors
from personal_connectors.issuers.exchange import TokenExchange, client_credentials
from personal_connectors.issuers.schemas import (
    EXCHANGE_FORM,
    ExchangedTokenOut,
    OAuthErrorOut,
    TrustedIssuerIn,
    TrustedIssuerOut,
)
from personal_connectors.issuers.service import TrustedIssuerService
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.oauth.rfc8693 import ExchangeError

router = APIRouter(tags=["Token exchange"])

IssuerId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> TrustedIssuerService:
    return TrustedIssuerService(session, runtime.settings)


ServiceDep = Annotated[TrustedIssuerService, Depends(get_service)]


@router.post(
    "/trusted-issuers",
    response_model=TrustedIssuerOut,
    status_code=201,
    summary="Trust an identity provider's JWTs to name end users (RFC 8693 token exchange)",
    responses=errors(409),
)
async def create_trusted_issuer(
    body: TrustedIssuerIn, access: AdminAccessDep, service: ServiceDep
) -> TrustedIssuerOut:
    return TrustedIssuerOut.of(await service.create(access.organization_id, body))


@router.get(
    "/trusted-issuers", response_model=list[TrustedIssuerOut], summary="The trusted issuers"
)
async def list_trusted_issuers(
    access: AdminAccessDep, service: ServiceDep
) -> list[TrustedIssuerOut]:
    return [TrustedIssuerOut.of(row) for row in await service.list_for(access.organization_id)]


@router.get(
    "/trusted-issuers/{issuer_id}", response_model=TrustedIssuerOut, summary="A trusted issuer"
)
async def get_trusted_issuer(
    issuer_id: IssuerId, access: AdminAccessDep, service: ServiceDep
) -> TrustedIssuerOut:
    return TrustedIssuerOut.of(await service.get(access.organization_id, issuer_id))


@router.delete("/trusted-issuers/{issuer_id}", status_code=204, summary="Stop trusting an issuer")
async def delete_trusted_issuer(
    issuer_id: IssuerId, access: AdminAccessDep, service: ServiceDep
) -> Response:
    await service.delete(access.organization_id, issuer_id)
    return Response(status_code=204)


NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(description: str) -> dict[str, object]:
    return {"description": description, "model": OAuthErrorOut}


async def exchange_token(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    basic = False
    exchange = TokenExchange(session, runtime)
    try:
        credentials = client_credentials(request)
        basic = credentials.basic_client_id is not None
        try:
            form = await read_form(request)
        except FormError as exc:
            raise ExchangeError("invalid_request", str(exc)) from None
        body = await exchange.exchange(credentials, form)
    except ExchangeError as exc:
        add_response_headers(request.scope, exchange.response_headers)
        headers = {**NO_STORE, **exc.headers}
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = 'Basic realm="personal-connectors"' if basic else "Bearer"
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)
    add_response_headers(request.scope, exchange.response_headers)
    return JSONResponse(body, headers=NO_STORE)


def add_exchange_route(app: FastAPI) -> None:
    """On the application's own router, ahead of the token route, whose path
    (``/{connection_id}/token``) would otherwise take ``/oauth/token`` for a connection named
    "oauth"; not through an included router, which the token route would then sit behind."""
    app.add_api_route(
        f"{API_PREFIX}/oauth/token",
        exchange_token,
        methods=["POST"],
        response_model=ExchangedTokenOut,
        summary="Exchange an end user's JWT for a connection's token or a pct_ token (RFC 8693)",
        tags=["Token exchange"],
        openapi_extra={"requestBody": EXCHANGE_FORM},
        responses={
            400: _oauth_error(
                "RFC 6749 §5.2: `invalid_request`, `invalid_grant` (the subject token fails a "
                "check, or the connection needs re-authorization), `invalid_target`, "
                "`unauthorized_client` (a user key), `unsupported_grant_type`."
            ),
            401: _oauth_error("`invalid_client`: no key, or not a usable exchange or service key."),
            429: _oauth_error(
                "`slow_down`: the key's rate limit for this end user, or its total, is spent "
                "(`CONNECTORS_RATE_LIMIT`, `CONNECTORS_RATE_LIMIT_SERVICE`); with `Retry-After`."
            ),
            503: _oauth_error("`temporarily_unavailable`: the provider or the issuer is down."),
        },
    )
