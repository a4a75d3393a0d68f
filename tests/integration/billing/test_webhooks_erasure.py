"""An erased organisation's webhook endpoints (URL, encrypted secret) and their deliveries are deleted by
billing when it reads the erasure's `organization.erased` event, and no alert is sent to them after: a real
nats-server, the billing service as a process, SQLite, and a local receiver counting what reaches each
organisation's URL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
import pytest

from switchyard.billing.db import migrations as billing_migrations
from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.billing_rpc import CreatedWebhook, WebhookCreate
from switchyard.common.envelope import encode
from switchyard.common.events import AdminActionRecorded, BudgetAlert
from switchyard.common.events.base import EventPayload
from tests.support.bus_services import BusService
from tests.support.prices import PRICE_SHEET

pytestmark = pytest.mark.integration

ERASED, OTHER = "org-erased-1", "org-other-2"


class Receiver:
    """Answers 204 to every POST, counting them per path (one path per organisation)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                receiver.paths.append(self.path)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, tenant_id: str) -> str:
        return f"{self.base}/hooks/{tenant_id}"

    def hits(self, tenant_id: str) -> int:
        return self.paths.count(f"/hooks/{tenant_id}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def billing(nats_server: NatsServer, sqlite_url: str, tmp_path: Path) -> Iterator[Path]:
    asyncio.run(billing_migrations().upgrade(sqlite_url))
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
    }
    service = BusService("billing", env=env, log_path=tmp_path / "billing.log")
    asyncio.run(service.start())
    try:
        yield Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    finally:
        service.stop()


def _rows(db: Path, table: str, tenant_id: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT * FROM {table} WHERE tenant_id = ?", (tenant_id,)).fetchall()
    finally:
        con.close()


def _alert(tenant_id: str, n: int) -> BudgetAlert:
    return BudgetAlert(
        alert_id=f"alert-{tenant_id}-{n}",
        tenant_id=tenant_id,
        scope="org",
        period="202612",
        threshold_pct=50 + 30 * n,
        limit_usd="10",
        spent_usd="9",
        at=datetime.now(UTC),
    )


async def _publish(js: Any, payload: EventPayload, tenant_id: str) -> None:
    _, raw = encode(payload, source="test", tenant_id=tenant_id)
    await js.publish(payload.SUBJECT, raw)


async def _eventually(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_an_erased_organisations_webhooks_and_deliveries_are_deleted_and_never_called_again(
    nats_server: NatsServer, billing: Path, receiver: Receiver
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        for tenant in (ERASED, OTHER):
            ask = WebhookCreate(tenant_id=tenant, url=receiver.url(tenant), description="alerts")
            reply = await nc.request(subjects.BILLING_RPC_WEBHOOK_CREATE, ask.model_dump_json().encode(), 10)
            CreatedWebhook.model_validate_json(reply.data)
            await _publish(js, _alert(tenant, 0), tenant)
        await _eventually(lambda: receiver.hits(ERASED) == 1 and receiver.hits(OTHER) == 1)
        await _eventually(lambda: len(_rows(billing, "webhook_deliveries", ERASED)) == 1)
        assert len(_rows(billing, "webhook_endpoints", ERASED)) == 1

        erased = AdminActionRecorded(
            action="organization.erased",
            tenant_id=ERASED,
            target_type="organization",
            target_id=ERASED,
            changes={"keys_revoked": 1},
            at=datetime.now(UTC),
        )
        await _publish(js, erased, ERASED)
        await _eventually(lambda: not _rows(billing, "webhook_endpoints", ERASED))
        assert _rows(billing, "webhook_deliveries", ERASED) == []
        # the other organisation's are its own
        assert len(_rows(billing, "webhook_endpoints", OTHER)) == 1
        assert len(_rows(billing, "webhook_deliveries", OTHER)) == 1

        for tenant in (ERASED, OTHER):  # an alert after the erasure (one still in flight, say)
            await _publish(js, _alert(tenant, 1), tenant)
        await _eventually(lambda: receiver.hits(OTHER) == 2)
        await asyncio.sleep(1.0)  # the erased one's alert was handled too (one consumer, in order)
        assert receiver.hits(ERASED) == 1
        assert _rows(billing, "webhook_endpoints", ERASED) == []
        assert _rows(billing, "webhook_deliveries", ERASED) == []
    finally:
        await nc.close()
