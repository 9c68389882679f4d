"""``/livez`` answers without touching anything; ``/readyz`` asks the database."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from personal_connectors.exceptions import ServiceUnavailable
from personal_connectors.http.dependencies import RuntimeDep
from personal_connectors.http.openapi import errors
from personal_connectors.storage.database import ping

router = APIRouter(tags=["Operations"])


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
