from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from switchyard.common import subjects
from switchyard.common.healthcheck import ping_problem
from switchyard.gateway.state import gateway_of
from switchyard.gateway.stopping import Stop

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the gateway can take work (the bus is connected, it is not stopping); `strict` also "
    "needs every service",
)
async def readyz(request: Request, strict: bool = False) -> JSONResponse:
    """Tasks wait durably in JetStream for a service that is down, so by default a silent service makes the
    gateway `degraded` (200, named in the body), not unready: failing every replica's probe at once would
    turn a queue that drains later into a load balancer answering 503 to everything. `?strict=true` is
    the whole-platform check (`switchyard up` waits on it). A replica that is stopping is unready from
    its SIGTERM on (503 `stopping`, with the reason), while it finishes what it took (`stopping.py`)."""
    gw = gateway_of(request)
    if gw.stop.stopping:
        return JSONResponse(
            {"status": "stopping", "reason": _stopping_reason(gw.stop, gw.settings.stop_grace_s)},
            status_code=503,
        )
    nc = gw.nc
    timeout = gw.settings.readiness_timeout_s

    async def problem(service: str) -> str | None:
        """Why `service` is not ready: a replica of it must answer its ping, and not be stopping (a
        stopping one still answers, finishing its work: counted, it hid a service about to be gone)."""
        if service == "gateway":
            return None if nc.is_connected else "not connected to NATS"
        try:
            return await ping_problem(nc, service, timeout_s=timeout)
        except Exception as exc:  # the connection is down: the gateway itself says so
            return f"{service}: {type(exc).__name__}"

    problems = await asyncio.gather(*(problem(s) for s in subjects.SERVICES))
    status = {service: p is None for service, p in zip(subjects.SERVICES, problems, strict=True)}
    ready = all(status.values()) if strict else status["gateway"]
    state = "ready" if all(status.values()) else ("degraded" if ready else "not_ready")
    body: dict[str, object] = {"status": state, "services": status}
    if not all(status.values()):  # what the on-call engineer looks for next
        body["problems"] = {s: p for s, p in zip(subjects.SERVICES, problems, strict=True) if p is not None}
    return JSONResponse(body, status_code=200 if ready else 503)


def _stopping_reason(stop: Stop, grace_s: float) -> str:
    since = stop.unready_since or time.time()
    return (
        f"this gateway replica is stopping (a stop signal came {max(0.0, time.time() - since):.1f} s ago): "
        f"send new requests to another replica; those under way finish within its stop grace ({grace_s:g} s)"
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """Prometheus' text format, or OpenMetrics (with exemplars: traces behind the latency buckets) when
    the scraper asks for it, as the bus services' metrics servers answer."""
    encoder, media_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(REGISTRY), media_type=media_type)
