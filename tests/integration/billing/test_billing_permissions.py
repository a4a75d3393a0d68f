"""Billing under `switchyard up`'s least-privilege NATS permissions (`cli/bus_permissions.py`): a real
nats-server with the generated users, billing as a process logged in as `billing`, a webhook endpoint
created over the RPC the gateway calls (as `gateway`), a priced result that crosses a budget (the limit
the gateway writes), the budget alerts billing publishes, and their webhook delivery with a retry (the
receiver fails the first POST), then an organisation's erasure. Nothing on the way may be refused: the
server's log and billing's own say no permissions violation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
import pytest

from switchyard.billing import alerts
from switchyard.billing.db import migrations
from switchyard.cli.bus_permissions import Integrator
from switchyard.common import bus, ids, subjects
from switchyard.common.billing_rpc import CreatedWebhook, WebhookCreate
from switchyard.common.budgets import limit_key, limits_bucket, write_limit
from switchyard.common.events import AdminActionRecorded, TaskCompleted, Usage
from tests.support.bus_services import BusService
from tests.support.guarded_bus import GuardedBus, scoped_guarded_bus
from tests.support.prices import PRICE_SHEET
from tests.support.tasks import completed

pytestmark = pytest.mark.integration

TENANT, USER = "acme", "u1"
SCOPED = Integrator("integrator", (TENANT,))


class FailingOnce:
    """Answers 500 to the first POST, 204 to the others; counts them."""

    def __init__(self) -> None:
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                receiver.posts += 1
                self.send_response(500 if receiver.posts == 1 else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


@pytest.fixture
def scoped_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    yield from scoped_guarded_bus(tmp_path, monkeypatch, SCOPED)


@pytest.fixture
def receiver() -> Iterator[FailingOnce]:
    r = FailingOnce()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


async def _eventually(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def _result() -> TaskCompleted:
    return completed(
        "task-1", TENANT, user_id=USER, usage=Usage(prompt_tokens=1000, completion_tokens=500)
    )  # $0.00045


async def _claim_alert_ids(guarded: GuardedBus, limit_micro: int) -> None:
    """What an integrator scoped to the organisation can do before its budget alerts fire: publish, on a
    subject it may, under the ids the alerts' events would have if they were derived from what it knows
    (the organisation, the user, the day, the budget), so the events stream would drop the alerts as
    duplicates of its messages for 2 minutes."""
    integrator = await guarded.connect(SCOPED.user)
    try:
        js, token = integrator.jetstream(), subjects.tenant_token(TENANT)
        for acct in alerts.accounts_of(tenant_id=TENANT, user_id=USER, day=datetime.now(UTC).date()):
            for threshold in (50, 80, 100):
                key = (
                    f"{TENANT}:{acct.scope}:{acct.account}:{acct.period}:{limit_micro * alerts.MICRO_TO_E10}"
                )
                guessed = ids.derived_id(key, f"budget-alert-{threshold}")
                await js.publish(f"{subjects.TASK_FEEDBACK}.{token}", b"{}", headers={"Nats-Msg-Id": guessed})
    finally:
        await integrator.close()


async def test_billing_delivers_budget_alert_webhooks_with_retries_under_its_permissions(
    scoped_bus: GuardedBus, receiver: FailingOnce, sqlite_url: str, tmp_path: Path
) -> None:
    """Also when an integrator of the organisation tried to take the alerts' event ids first."""
    guarded = scoped_bus
    await _claim_alert_ids(guarded, 500)
    await migrations().upgrade(sqlite_url)
    env = {
        **guarded.env("billing"),
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
    }
    log = tmp_path / "billing.log"
    billing = BusService("billing", env=env, log_path=log, ping_url=guarded.operator_url)
    await billing.start()
    gateway_errors: list[str] = []
    gateway = await guarded.connect("gateway", gateway_errors)
    operator = await nats.connect(guarded.operator_url)
    try:
        ask = WebhookCreate(tenant_id=TENANT, url=receiver.url, description="alerts")
        reply = await gateway.request(subjects.BILLING_RPC_WEBHOOK_CREATE, ask.model_dump_json().encode(), 10)
        CreatedWebhook.model_validate_json(reply.data)
        await write_limit(await limits_bucket(gateway.jetstream()), limit_key(TENANT, USER), 500)  # $0.0005
        publisher = bus.EventPublisher(operator.jetstream(), source="test")
        await publisher.publish(
            _result(), subject=subjects.result_subject("acme", "task-1"), tenant_id=TENANT
        )
        # the 50 % and 80 % alerts, each POSTed; the first POST fails and is retried (0.5 s later)
        await _eventually(lambda: receiver.posts >= 3)
        erased = AdminActionRecorded(
            action="organization.erased", tenant_id=TENANT, target_type="organization", target_id=TENANT,
            at=datetime.now(UTC),
        )  # fmt: skip
        await publisher.publish(erased, tenant_id=TENANT, event_subject=TENANT)
        await _eventually(lambda: "webhook endpoints and" in log.read_text())
        await gateway.flush()
    finally:
        await gateway.close()
        await operator.close()
        billing.stop()
    assert receiver.posts == 3  # two alerts, one of them sent twice
    assert gateway_errors == []
    guarded.assert_clean(log)
