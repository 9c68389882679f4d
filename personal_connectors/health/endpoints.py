"""``/livez`` answers without touching anything; ``/readyz`` asks the database; ``/metrics``
reports the Prometheus series (``telemetry.metrics``), behind ``CONNECTORS_METRICS_TOKEN`` when
one is set. ``/metrics`` is the operator's, not the platform's: it is left out of the API's
OpenAPI document."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from personal_connectors.exceptions import AuthenticationRequired, ServiceUnavailable
from personal_connectors.http.dependencies import RuntimeDep
from personal_connectors.http.openapi import errors
from personal_connectors.storage.database import ping
from personal_connectors.telemetry.metrics import CONTENT_TYPE, exposition

router = APIRouter(tags=["Operations"])


class MetricsTokenRequired(AuthenticationRequired):
    message = "GET /metrics needs the metrics token: send Authorization: Bearer <token>."


@router.get("/livez", summary="Liveness: the process answers")
async def livez() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database answers", responses=errors(503))
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    try:
        await ping(runtime.engine)
    except Exception:
        raise ServiceUnavailable("The database does not answer.") from None
    return JSONResponse({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus text format. A plain function: FastAPI runs it on its thread pool, so reading
    every worker's files never holds up the event loop."""
    token = runtime.settings.metrics_token
    if token is not None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected
        ):
            raise MetricsTokenRequired(
                "Set Authorization: Bearer to the value of CONNECTORS_METRICS_TOKEN.",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    return Response(exposition(), media_type=CONTENT_TYPE)
