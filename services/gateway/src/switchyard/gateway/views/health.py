from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchyard.common import subjects
from switchyard.gateway.state import gateway_of

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the bus and every service answer")
async def readyz(request: Request) -> JSONResponse:
    gw = gateway_of(request)
    nc = gw.nc
    timeout = gw.settings.readiness_timeout_s

    async def ping(service: str) -> bool:
        if service == "gateway":
            return nc.is_connected
        try:
            await nc.request(subjects.ping_subject(service), b"", timeout=timeout)
            return True
        except Exception:
            return False

    results = await asyncio.gather(*(ping(s) for s in subjects.SERVICES))
    status = dict(zip(subjects.SERVICES, results, strict=True))
    ready = all(results)
    body = {"status": "ready" if ready else "not_ready", "services": status}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
