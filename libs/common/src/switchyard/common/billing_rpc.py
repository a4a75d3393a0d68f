"""Billing queries, core NATS request/reply on `switchyard.usage.rpc.*`, answered by the billing service.

The gateway (usage API, admin webhooks) and anything else on the bus ask billing here instead of reading
its tables. Requests and replies are plain JSON (not CloudEvents); every request names the tenant it is
scoped to, and billing answers for that tenant only. Money is a decimal string in USD with 10 places
(exact: `"0.0094950000"`). A reply is the document asked for, or `{"error": {"code", "message"}}` with
code `not_found` or `invalid_request` (the same shape as the ledger's, `switchyard.common.ledger_rpc`).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, PlainSerializer, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

# Errors have the ledger requests' shape: {"error": {"code", "message"}}.
from switchyard.common.ledger_rpc import RpcError as RpcError
from switchyard.common.ledger_rpc import RpcErrorReply as RpcErrorReply

# USD as an exact decimal, written in fixed point ("0.0000000000", never "0E-10").
Money = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]
GroupBy = Literal["day", "month", "user", "key", "model", "tier", "kind"]
GROUP_BY: tuple[str, ...] = GroupBy.__args__  # type: ignore[attr-defined]


def _by_day() -> list[GroupBy]:
    return ["day"]


class _Scoped(BaseModel):
    tenant_id: str = Field(min_length=1, max_length=64)


# Days a query may name: the arithmetic around them (windows before, month ends after) stays in `date`'s
# range (a forecast as of 0001-01-01 raised OverflowError in the billing service: a 500).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


def _a_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return day


def _a_month(month: str) -> str:
    _a_day(date(int(month[:4]), int(month[5:7]), 1))  # year 0000: date() refuses it (ValueError) itself
    return month


Day = Annotated[date, AfterValidator(_a_day)]


# A range's own errors (pydantic's `type` of them), which each edge words with its own names for the two
# days (`range_problem`): `end` and `start` over HTTP, --to and --from in the CLI.
END_BEFORE_START, RANGE_TOO_LONG = "end_before_start", "range_too_long"
MAX_RANGE_DAYS = 731


class _Range(_Scoped):
    start: Day = Field(description="first day (UTC), inclusive")
    end: Day = Field(description="last day (UTC), inclusive")

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        days = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        if self.end < self.start:
            raise PydanticCustomError(END_BEFORE_START, "end ({end}) is before start ({start})", days)
        if (self.end - self.start).days > MAX_RANGE_DAYS:
            raise PydanticCustomError(
                RANGE_TOO_LONG, f"start to end: at most two years ({MAX_RANGE_DAYS} days) at a time", days
            )
        return self


def range_problem(error: ErrorDetails, *, start: str, end: str) -> str | None:
    """A range's error in plain words, naming its days as the caller's interface does (`start`, `end`);
    None for any other error."""
    days = error.get("ctx") or {}
    if error["type"] == END_BEFORE_START:
        return f"{end} ({days['end']}) is before {start} ({days['start']})"
    if error["type"] == RANGE_TOO_LONG:
        return f"{start} to {end}: at most two years ({MAX_RANGE_DAYS} days) at a time"
    return None


class UsageQuery(_Range):
    user_id: str | None = None
    api_key_id: str | None = Field(default=None, description="only what this API key (its id) ran")
    model: str | None = None
    tier: str | None = None
    group_by: list[GroupBy] = Field(default_factory=_by_day)


class UsageRow(BaseModel):
    day: date | None = None
    month: str | None = None
    user_id: str | None = None
    api_key_id: str | None = Field(default=None, description="the API key's id (group_by key)")
    model: str | None = None
    tier: str | None = None
    kind: str | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = Field(
        default=0, description="of prompt_tokens: read from the provider's prompt cache"
    )
    cache_write_tokens: int = Field(
        default=0, description="of prompt_tokens: written to the provider's prompt cache"
    )
    cost_usd: Money
    unpriced: int = Field(description="entries whose model had no price (charged nothing)")
    estimated: int = Field(
        default=0, description="entries whose token counts are an estimate (the upstream reported none)"
    )


class UsageTotals(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = Field(
        default=0, description="of prompt_tokens: read from the provider's prompt cache"
    )
    cache_write_tokens: int = Field(
        default=0, description="of prompt_tokens: written to the provider's prompt cache"
    )
    cost_usd: Money
    unpriced: int
    estimated: int = 0


class UsageReport(BaseModel):
    format: str = "switchyard.usage.v1"
    tenant_id: str
    start: date
    end: date
    group_by: list[str]
    rows: list[UsageRow]
    totals: UsageTotals


class StatementQuery(_Scoped):
    month: Annotated[str, AfterValidator(_a_month)] = Field(
        pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM"
    )


class StatementLine(BaseModel):
    model: str
    tier: str
    kind: str = Field(description="task: delivered answers; call: extra billable calls (losers, retries)")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = Field(
        default=0, description="of prompt_tokens: read from the provider's prompt cache"
    )
    cache_write_tokens: int = Field(
        default=0, description="of prompt_tokens: written to the provider's prompt cache"
    )
    cost_usd: Money
    estimated: int = Field(
        default=0, description="of requests: those whose token counts are an estimate (none reported)"
    )


class Statement(BaseModel):
    format: str = "switchyard.statement.v1"
    tenant_id: str
    month: str
    period_start: date
    period_end: date
    lines: list[StatementLine]
    totals: UsageTotals
    entries: int = Field(description="usage entries in the month (tasks and billable calls)")
    entries_cost_usd: Money = Field(description="the same month summed entry by entry")
    reconciled: bool = Field(description="lines and totals equal the entries, to the last 1e-10 USD")
    generated_at: datetime


class SavingsQuery(_Range):
    pass


class SavingsLine(BaseModel):
    tier: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    paid_usd: Money
    premium_usd: Money = Field(description="the same tokens at the premium reference model")


class SavingsReport(BaseModel):
    format: str = "switchyard.savings.v1"
    tenant_id: str
    start: date
    end: date
    premium_model: str | None = Field(description="the reference model: the policy's first premium model")
    lines: list[SavingsLine]
    paid_usd: Money
    premium_usd: Money
    saved_usd: Money
    saved_pct: float | None


class ForecastQuery(_Scoped):
    as_of: Day | None = Field(default=None, description="default: today (UTC)")
    window_days: int = Field(default=14, ge=3, le=90, description="trailing days the trend is fitted on")


class DayCost(BaseModel):
    day: date
    cost_usd: Money


class Anomaly(BaseModel):
    day: date
    cost_usd: Money
    baseline_usd: Money = Field(description="median of the trailing window")
    score: float = Field(
        description="robust z-score: (cost - median) / spread (1.4826 x MAD, see analytics.anomalies)"
    )
    direction: Literal["spike", "drop"]


class Forecast(BaseModel):
    format: str = "switchyard.forecast.v1"
    tenant_id: str
    month: str
    as_of: date
    spent_to_date_usd: Money
    forecast_usd: Money = Field(description="month-end spend: to date plus the trend over the days left")
    trend_daily_usd: Money = Field(description="the fitted daily spend for the last day of the window")
    method: str
    daily: list[DayCost]
    anomalies: list[Anomaly]


def _a_url(url: str) -> str:
    """An http(s) URL a request can go to: a host, and a port that is a number (urlsplit reads
    `http://host:x/` and only raises on `.port`, which would fail the endpoint's first delivery instead)."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("the URL names no host")
    return url


WebhookUrl = Annotated[
    str,
    Field(min_length=8, max_length=2000, pattern=r"^https?://\S+$", description="http(s) URL"),
    AfterValidator(_a_url),
]


class WebhookCreate(_Scoped):
    url: WebhookUrl
    description: str = Field(default="", max_length=200)


class WebhookRef(_Scoped):
    id: str


class WebhookList(_Scoped):
    pass


class Webhook(BaseModel):
    id: str
    url: str
    description: str
    secret_hint: str = Field(description="the secret's last 4 characters")
    active: bool
    created_at: datetime


class CreatedWebhook(Webhook):
    secret: str = Field(description="the signing secret, shown once")


class Webhooks(BaseModel):
    data: list[Webhook]


# The sums every CSV row carries, in their order (money as exact decimal strings, `Money`'s JSON form).
SUMMED_CSV_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)
USAGE_CSV_COLUMNS = (*SUMMED_CSV_COLUMNS, "unpriced", "estimated")
CSV_GROUP_COLUMNS = {"user": "user_id", "key": "api_key_id"}  # a group's row field, where not its name


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell as a spreadsheet shows it rather than runs it: one starting like a formula gets a
    leading `'` (OWASP's advice on CSV injection). Ids and names from the bus are the publisher's own."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def usage_csv(report: UsageReport) -> str:
    """The report as CSV: the group-by columns, then the sums; money as exact decimal strings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.group_by, *USAGE_CSV_COLUMNS])
    for row in report.rows:
        data = row.model_dump(mode="json")
        writer.writerow(
            [csv_text(str(data.get(CSV_GROUP_COLUMNS.get(g, g)) or "")) for g in report.group_by]
            + [data[c] for c in USAGE_CSV_COLUMNS]
        )
    return out.getvalue()


def statement_csv(statement: Statement) -> str:
    """One line per model, tier and kind, then a total line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = (*SUMMED_CSV_COLUMNS, "estimated")
    writer.writerow(["month", "model", "tier", "kind", *columns])
    for line in statement.lines:
        data = line.model_dump(mode="json")
        text = (csv_text(line.model), csv_text(line.tier), csv_text(line.kind))
        writer.writerow([statement.month, *text, *(data[c] for c in columns)])
    totals = statement.totals.model_dump(mode="json")
    writer.writerow([statement.month, "TOTAL", "", "", *(totals[c] for c in columns)])
    return out.getvalue()
