"""The usage API: usage with filters and group-by (JSON or CSV), the monthly statement, the month-end
forecast with anomaly flags, and the savings report. Answered by the billing service over NATS
request/reply (`switchyard.common.billing_rpc`), always for the caller's organisation; needs the
`billing:read` scope (roles `billing` and `admin`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

import nats
import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from switchyard.common import subjects
from switchyard.common.billing_rpc import (
    GROUP_BY,
    Forecast,
    ForecastQuery,
    SavingsQuery,
    SavingsReport,
    Statement,
    StatementQuery,
    UsageQuery,
    UsageReport,
    range_problem,
    statement_csv,
    usage_csv,
)
from switchyard.gateway.access import roles
from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import APIError, InvalidRequest, NotFound, ServiceUnavailable
from switchyard.gateway.openapi import ERRORS
from switchyard.gateway.state import gateway_of
from switchyard.gateway.tenants import Principal

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=ERRORS)
RPC_TIMEOUT_S = 10.0
Format = Literal["json", "csv"]
RPC_ERRORS: dict[str, type[APIError]] = {"not_found": NotFound, "invalid_request": InvalidRequest}


async def ask_billing(request: Request, subject: str, query: BaseModel) -> bytes:
    """The billing service's reply to `query`, or the matching API error."""
    gw = gateway_of(request)
    try:
        reply = await gw.nc.request(subject, query.model_dump_json().encode(), timeout=RPC_TIMEOUT_S)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
        raise ServiceUnavailable("the billing service is not answering; try again shortly") from exc
    body = orjson.loads(reply.data)
    error = body.get("error") if isinstance(body, dict) else None
    if error is not None:
        raise RPC_ERRORS.get(error.get("code"), APIError)(str(error.get("message", "billing request failed")))
    return bytes(reply.data)


async def _reader(request: Request) -> Principal:
    return await authenticate(request, gateway_of(request).verifier, scope=roles.BILLING_READ)


def _query(schema: type[BaseModel], **fields: object) -> BaseModel:
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        plain = range_problem(first, start="`start`", end="`end`")
        if plain is not None:
            raise InvalidRequest(plain, param="end") from exc
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"{param or 'query'}: {first['msg']}", param=param) from exc


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def _today() -> date:
    return datetime.now(UTC).date()


@router.get("", response_model=UsageReport, summary="Usage of your organisation, filtered and grouped")
async def usage(
    request: Request,
    start: Annotated[
        date | None, Query(description="first day (UTC); default: the 1st of this month")
    ] = None,
    end: Annotated[date | None, Query(description="last day (UTC), inclusive; default: today")] = None,
    user_id: str | None = None,
    api_key_id: Annotated[str | None, Query(description="only what this API key (its id) ran")] = None,
    model: str | None = None,
    tier: str | None = None,
    group_by: str = Query("day", description=f"comma-separated: {', '.join(GROUP_BY)} (empty: totals only)"),
    format: Format = "json",
) -> Response:
    principal = await _reader(request)
    today = _today()
    query = _query(
        UsageQuery,
        tenant_id=principal.tenant_id,
        start=start or today.replace(day=1),
        end=end or today,
        user_id=user_id,
        api_key_id=api_key_id,
        model=model,
        tier=tier,
        group_by=[g.strip() for g in group_by.split(",") if g.strip()],
    )
    body = await ask_billing(request, subjects.BILLING_RPC_USAGE, query)
    if format == "csv":
        report = UsageReport.model_validate_json(body)
        return _csv(usage_csv(report), f"usage-{report.start}-{report.end}.csv")
    return Response(body, media_type="application/json")


@router.get("/statement", response_model=Statement, summary="The monthly statement of your organisation")
async def statement(
    request: Request,
    month: str | None = Query(None, description="YYYY-MM; default: this month"),
    format: Format = "json",
) -> Response:
    principal = await _reader(request)
    query = _query(StatementQuery, tenant_id=principal.tenant_id, month=month or _today().strftime("%Y-%m"))
    body = await ask_billing(request, subjects.BILLING_RPC_STATEMENT, query)
    if format == "csv":
        doc = Statement.model_validate_json(body)
        return _csv(statement_csv(doc), f"statement-{doc.month}.csv")
    return Response(body, media_type="application/json")


@router.get("/forecast", response_model=Forecast, summary="Month-end cost forecast and spend anomalies")
async def forecast(
    request: Request,
    as_of: Annotated[date | None, Query(description="default: today (UTC)")] = None,
    window_days: int = Query(14, ge=3, le=90, description="trailing days the trend is fitted on"),
) -> Response:
    principal = await _reader(request)
    query = _query(ForecastQuery, tenant_id=principal.tenant_id, as_of=as_of, window_days=window_days)
    return Response(
        await ask_billing(request, subjects.BILLING_RPC_FORECAST, query), media_type="application/json"
    )


@router.get("/savings", response_model=SavingsReport, summary="Paid versus always-premium routing")
async def savings(
    request: Request,
    start: Annotated[date | None, Query(description="default: the 1st of this month")] = None,
    end: Annotated[date | None, Query(description="default: today")] = None,
) -> Response:
    principal = await _reader(request)
    today = _today()
    query = _query(
        SavingsQuery, tenant_id=principal.tenant_id, start=start or today.replace(day=1), end=end or today
    )
    return Response(
        await ask_billing(request, subjects.BILLING_RPC_SAVINGS, query), media_type="application/json"
    )
