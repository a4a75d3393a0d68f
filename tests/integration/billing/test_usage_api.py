"""The usage API, statements, analytics and budget-alert webhooks end to end: a real nats-server, the
billing service and a gateway as processes, SQLite, and a local HTTP receiver that verifies every
webhook's signature (and refuses the first deliveries, so retries are exercised)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js import api

from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.webhooks import SIGNATURE_HEADER, verify_signature
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.budgets import limit_key, limits_bucket, write_limit
from switchyard.common.envelope import decode
from switchyard.common.events import BudgetAlert, ChatMessage, ChatRequest, TaskCompleted, Usage
from tests.integration.gateway.harness import Answerer, Org, auth, gateways, make_org
from tests.support.bus_services import BusService
from tests.support.prices import PRICE_SHEET

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 503 to the first `fail_first` requests."""

    def __init__(self, fail_first: int) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 503 if len(receiver.requests) <= receiver.fail_first else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/budget"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=2) as r:
        yield r


@pytest.fixture
def stack(nats_server: NatsServer, sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Org, Org]]:
    asyncio.run(billing_migrations().upgrade(sqlite_url))
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
    }
    billing = BusService("billing", env=env, log_path=tmp_path / "billing.log")
    asyncio.run(billing.start())
    try:
        with gateways(nats_server, sqlite_url, tmp_path, env=env) as bases:
            acme = asyncio.run(make_org(sqlite_url, "acme", roles=("admin", "billing", "member")))
            globex = asyncio.run(make_org(sqlite_url, "globex", roles=("admin",)))
            yield bases[0], acme, globex
    finally:
        billing.stop()
    log = (tmp_path / "billing.log").read_text()
    assert "whsec_" not in log  # secrets never logged


def _result(org: Org, task_id: str, *, user: str, prompt: int, completion: int) -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id,
        tenant_id=org.id,
        user_id=user,
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="ok",
        finish_reason="stop",
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        attempts=1,
        latency_ms=3.0,
        completed_at=datetime.now(UTC),
    )


async def _alerts_on_bus(js: nats.js.JetStreamContext) -> list[tuple[str, BudgetAlert]]:
    sub = await js.pull_subscribe(
        subjects.BUDGET_ALERT,
        stream=subjects.STREAM_EVENTS,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
    )
    found: list[tuple[str, BudgetAlert]] = []
    try:
        while True:
            for msg in await sub.fetch(50, timeout=0.5):
                event, payload = decode(msg.data, (BudgetAlert,))
                assert isinstance(payload, BudgetAlert)
                found.append((event.id, payload))
    except (nats.errors.TimeoutError, TimeoutError):
        pass
    finally:
        await sub.unsubscribe()
    return found


async def _eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def test_usage_api_statement_and_signed_budget_webhooks(
    stack: tuple[str, Org, Org], nats_server: NatsServer, receiver: Receiver
) -> None:
    base, acme, globex = stack
    user = acme.users["member"]
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        # An admin adds an endpoint; the secret is in this answer only.
        made = await http.post(
            "/v1/admin/webhooks",
            json={"url": receiver.url, "description": "ops"},
            headers=auth(acme.keys["admin"]),
        )
        assert made.status_code == 201, made.text
        hook = made.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_") and hook["secret_hint"] == secret[-4:]
        listed = (await http.get("/v1/admin/webhooks", headers=auth(acme.keys["billing"]))).json()["data"]
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
        assert (await http.get("/v1/admin/webhooks", headers=auth(globex.keys["admin"]))).json()["data"] == []
        denied = await http.post(
            "/v1/admin/webhooks", json={"url": receiver.url}, headers=auth(acme.keys["billing"])
        )
        assert denied.status_code == 403
        for bad in (
            {"url": "ftp://example.com/x"},
            {"url": receiver.url, "description": "x" * 201},
            {},
            {"url": "http://example.com:port/x"},  # urlsplit reads it; only .port fails (was a 500, kept)
            {"url": "https://:8080/x"},  # no host
            {"url": "https://example.com/a b"},  # whitespace
        ):
            refused = await http.post("/v1/admin/webhooks", json=bad, headers=auth(acme.keys["admin"]))
            assert refused.status_code == 400, refused.text
        kept = (await http.get("/v1/admin/webhooks", headers=auth(acme.keys["admin"]))).json()["data"]
        assert [h["id"] for h in kept] == [hook["id"]]  # none of the refused was stored

        # The gateway publishes the ceilings it enforces; here the test sets them: $0.001 a day for the user.
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        try:
            await write_limit(await limits_bucket(js), limit_key(acme.id, user), 1_000)
            publisher = bus.EventPublisher(js, source="switchyard/executor")
            costs: list[Decimal] = []
            for n in range(4):  # $0.00045 each: 50 % after 2, 80 % and 100 % after 3
                done = _result(acme, f"acme-{n}", user=user, prompt=1000, completion=500)
                for copy in range(2):  # a result delivered twice is billed once
                    await publisher.publish(
                        done,
                        subject=subjects.result_subject(done.tenant_id, done.task_id),
                        event_id=f"r-{n}-{copy}",
                    )
                costs.append(Decimal("0.00045"))
            await publisher.publish(
                _result(globex, "globex-1", user="g", prompt=99, completion=1),
                subject=subjects.result_subject(globex.id, "globex-1"),
            )

            async def three_delivered() -> bool:
                ok = [h for h, _ in receiver.requests[receiver.fail_first :]]
                return len({h["switchyard-webhook-id"] for h in ok}) >= 3

            await _eventually(three_delivered, timeout=30)
            await asyncio.sleep(1.0)  # a late duplicate would show now
            alerts = await _alerts_on_bus(js)
        finally:
            await nc.close()

        # Exactly one event per threshold, with a stable id; each delivered, signed, and verifiable.
        assert sorted(a.threshold_pct for _, a in alerts) == [50, 80, 100]
        assert {a.scope for _, a in alerts} == {"user"} and {a.user_id for _, a in alerts} == {user}
        assert len(receiver.requests) >= 3 + receiver.fail_first  # the refused ones were retried
        delivered: dict[str, dict[str, Any]] = {}
        for headers, body in receiver.requests:
            assert verify_signature(secret, body, headers[SIGNATURE_HEADER.lower()])
            assert not verify_signature("whsec_wrong", body, headers[SIGNATURE_HEADER.lower()])
            assert not verify_signature(secret, body + b" ", headers[SIGNATURE_HEADER.lower()])
            event = json.loads(body)
            assert event["id"] == headers["switchyard-webhook-id"]
            delivered[event["id"]] = event
        assert set(delivered) == {eid for eid, _ in alerts}
        assert sorted(e["data"]["threshold_pct"] for e in delivered.values()) == [50, 80, 100]

        # The usage API: the billing role reads it, a member may not, and globex sees only its own.
        billing_key = auth(acme.keys["billing"])
        today = datetime.now(UTC).date()
        usage = await http.get("/v1/usage", params={"group_by": "user,model"}, headers=billing_key)
        assert usage.status_code == 200, usage.text
        body = usage.json()
        assert body["totals"]["requests"] == 4
        assert Decimal(body["totals"]["cost_usd"]) == sum(costs, Decimal(0))
        assert [(r["user_id"], r["model"]) for r in body["rows"]] == [(user, "openai/gpt-4o-mini")]
        member = await http.get("/v1/usage", headers=auth(acme.keys["member"]))
        assert member.status_code == 403 and member.json()["error"]["type"] == "permission_error"
        other = (await http.get("/v1/usage", headers=auth(globex.keys["admin"]))).json()
        assert other["totals"]["requests"] == 1
        bad = await http.get("/v1/usage", params={"group_by": "colour"}, headers=billing_key)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        for path in ("/v1/usage", "/v1/usage/savings"):  # said "query: Value error, end is before start"
            backwards = await http.get(
                path, params={"start": "2026-11-30", "end": "2026-11-01"}, headers=billing_key
            )
            error = backwards.json()["error"]
            assert (backwards.status_code, error["code"], error["param"]) == (400, "invalid_request", "end")
            assert error["message"] == "`end` (2026-11-01) is before `start` (2026-11-30)", error
        too_long = await http.get(
            "/v1/usage", params={"start": "2024-01-01", "end": "2026-11-01"}, headers=billing_key
        )
        assert too_long.json()["error"]["param"] == "end", too_long.text
        assert "Value error" not in too_long.text and "at most two years" in too_long.text
        for path, params in (  # days whose arithmetic leaves `date`'s range (a forecast was a 500)
            ("/v1/usage/forecast", {"as_of": "0001-01-01"}),
            ("/v1/usage/forecast", {"as_of": "9999-12-31"}),
            ("/v1/usage/statement", {"month": "0000-01"}),
            ("/v1/usage/statement", {"month": "9999-12"}),
            ("/v1/usage", {"start": "0001-01-01", "end": "0001-01-02"}),
        ):
            far = await http.get(path, params=params, headers=billing_key)
            assert far.status_code == 400, (path, params, far.text)

        as_csv = await http.get(
            "/v1/usage", params={"group_by": "day,model", "format": "csv"}, headers=billing_key
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert rows == [
            {
                "day": today.isoformat(),
                "model": "openai/gpt-4o-mini",
                "requests": "4",
                "prompt_tokens": "4000",
                "completion_tokens": "2000",
                "cache_read_tokens": "0",
                "cache_write_tokens": "0",
                "cost_usd": "0.0018000000",
                "unpriced": "0",
                "estimated": "0",
            }
        ]

        statement = await http.get("/v1/usage/statement", headers=billing_key)
        doc = statement.json()
        assert doc["reconciled"] and doc["entries"] == 4 and doc["totals"]["cost_usd"] == "0.0018000000"
        statement_csv = await http.get("/v1/usage/statement", params={"format": "csv"}, headers=billing_key)
        last = list(csv.DictReader(io.StringIO(statement_csv.text)))[-1]
        assert last["model"] == "TOTAL" and last["cost_usd"] == "0.0018000000"

        forecast = (await http.get("/v1/usage/forecast", headers=billing_key)).json()
        assert Decimal(forecast["spent_to_date_usd"]) == Decimal("0.0018")
        assert Decimal(forecast["forecast_usd"]) >= Decimal(forecast["spent_to_date_usd"])
        savings = (await http.get("/v1/usage/savings", headers=billing_key)).json()
        assert Decimal(savings["paid_usd"]) == Decimal("0.0018") and Decimal(savings["saved_usd"]) > 0

        removed = await http.delete(f"/v1/admin/webhooks/{hook['id']}", headers=auth(acme.keys["admin"]))
        assert removed.status_code == 200 and removed.json()["active"] is False
        again = await http.delete(f"/v1/admin/webhooks/{hook['id']}", headers=auth(globex.keys["admin"]))
        assert again.status_code == 404

    await _gateway_publishes_limits(base, acme, nats_server.url)


async def _gateway_publishes_limits(base: str, acme: Org, nats_url: str) -> None:
    """A completion through the gateway (the pipeline stood in for) writes the ceilings it enforces."""
    answerer = await Answerer.start(nats_url)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            reply = await http.post(
                "/v1/chat/completions",
                json=ChatRequest(
                    model="auto", messages=[ChatMessage(role="user", content="hi")]
                ).model_dump(),
                headers=auth(acme.keys["member"]),
            )
            assert reply.status_code == 200, reply.text
    finally:
        await answerer.close()
    nc = await nats.connect(nats_url)
    try:
        bucket = await limits_bucket(nc.jetstream())

        async def written(key: str) -> dict[str, Any] | None:
            try:
                entry = await bucket.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return json.loads(entry.value or b"{}")  # type: ignore[no-any-return]

        # make_org's users inherit the organisation's plan (enterprise: no daily limit, no monthly budget).
        assert (await _eventually(lambda: written(limit_key(acme.id, acme.users["member"]))))[
            "micro_usd"
        ] is None
        assert (await _eventually(lambda: written(limit_key(acme.id))))["micro_usd"] is None
    finally:
        await nc.close()
