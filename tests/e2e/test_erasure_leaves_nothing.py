"""A data-protection audit of an erasure on the whole platform (`switchyard up`): an organisation asks
chat completions, stores a response and a conversation, uploads a file, runs a task API task (with an
Idempotency-Key), all carrying one unique prompt, and adds a budget-alert webhook whose URL names it; the
operator erases it; then every store is searched for the prompt and the organisation's id: every table of
the database (billing's webhook endpoints and deliveries among them: billing deletes them when it reads
the erasure's event), every message of every JetStream stream (the events and dead-letter streams, every
KV bucket's and object store's). The prompt is nowhere; the id only in the records the README's erasure
section says are kept."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import nats
import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

# Where the README says an erased organisation's id is kept (never its content): not billing's
# `webhook_endpoints` and `webhook_deliveries`.
KEPT_TABLES = {
    "tenants",  # its row
    "users",  # disabled
    "api_keys",  # revoked
    "ledger_entries",  # the audit ledger (ids, counts, keyed digests)
    "ledger_digest_keys",  # its key, deleted (secret null)
    "usage_entries",  # billing, for accounting
    "call_usage_entries",
    "usage_daily",
    "usage_daily_keys",
    "budget_alerts",
}
WEBHOOK_TABLES = {"webhook_endpoints", "webhook_deliveries"}
KEPT_SUBJECTS = (  # events without content, until the stream's retention
    "switchyard.billing.",
    "switchyard.admin.",
    "switchyard.security.",
    "switchyard.provider.",
)
KEPT_BUCKETS = (  # the registry (erased), key revocations, counters under ids
    "$KV.switchyard-tenants.",
    "$KV.switchyard-auth-changes.",
    "$KV.switchyard-gateway-limits.",
    "$KV.switchyard-spend.",
    "$KV.switchyard-spend-total.",
    "$KV.switchyard-budgets.",
)


def _tables(db: Path, needles: dict[str, bytes]) -> dict[str, set[str]]:
    """needle name -> the tables holding it in any column."""
    found: dict[str, set[str]] = {name: set() for name in needles}
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):  # the database's own table names
                text = "\x1f".join(str(v) for v in row).encode()
                for name, needle in needles.items():
                    if needle in text:
                        found[name].add(table)
    finally:
        con.close()
    return found


async def _streams(url: str, needles: dict[str, bytes]) -> dict[str, set[str]]:
    """needle name -> the `stream subject` of every stored message holding it."""
    found: dict[str, set[str]] = {name: set() for name in needles}
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            state = info.state
            if not state.messages:
                continue
            for seq in range(state.first_seq, state.last_seq + 1):
                try:
                    msg = await js.get_msg(info.config.name, seq)
                except nats.js.errors.NotFoundError:
                    continue
                body = (msg.data or b"") + json.dumps(dict(msg.headers or {})).encode()
                for name, needle in needles.items():
                    if needle in body:
                        found[name].add(f"{info.config.name} {msg.subject}")
    finally:
        await nc.close()
    return found


def test_an_erased_organisation_leaves_only_the_documented_records(stack: RunningStack) -> None:
    operator = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.base_url, timeout=120) as c:
        made = c.post(
            "/v1/admin/organizations",
            json={"name": f"dpo-{uuid.uuid4().hex[:6]}", "admin_email": "dpo@leaver.test"},
            headers=operator,
        )
        assert made.status_code == 201, made.text
        org_id = made.json()["organization"]["id"]
        key = {"Authorization": f"Bearer {made.json()['key']['key']}"}
        prompt = f"my patient record {uuid.uuid4().hex}"
        messages = [{"role": "user", "content": prompt}]

        chat = c.post(
            "/v1/chat/completions", json={"model": "auto", "max_tokens": 8, "messages": messages}, headers=key
        )
        assert chat.status_code == 200, chat.text
        stored = c.post(
            "/v1/responses", json={"model": "auto", "max_output_tokens": 16, "input": prompt}, headers=key
        )
        assert stored.status_code == 200, stored.text
        items = [{"type": "message", "role": "user", "content": prompt}]
        conversation = c.post("/v1/conversations", json={"items": items}, headers=key)
        assert conversation.status_code == 200, conversation.text
        line = {
            "custom_id": "q",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "auto", "messages": messages},
        }
        upload = c.post(
            "/v1/files",
            files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")},
            data={"purpose": "batch"},
            headers=key,
        )
        assert upload.status_code == 200, upload.text
        hook = c.post("/v1/admin/webhooks", json={"url": f"http://127.0.0.1:9/alerts/{org_id}"}, headers=key)
        assert hook.status_code == 201, hook.text
        task = c.post(
            "/v1/tasks",
            json={"model": "auto", "max_tokens": 8, "messages": messages},
            headers={**key, "Idempotency-Key": "dpo-1"},
        )
        assert task.status_code in (200, 201, 202), task.text
        task_id = task.json()["id"]
        deadline = time.monotonic() + 120
        while c.get(f"/v1/tasks/{task_id}", headers=key).json()["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, "the task did not end"
            time.sleep(0.5)

        time.sleep(2)  # the ledger and billing read the last events
        deadline = time.monotonic() + 60
        runs = []
        while True:  # again while a consumer had not read an event yet (events_left)
            erased = c.post(f"/v1/admin/organizations/{org_id}/erase", headers=operator, timeout=120)
            assert erased.status_code == 200, erased.text
            runs.append(erased.json())
            if not erased.json()["events_left"] or time.monotonic() > deadline:
                break
            time.sleep(1)
    first = runs[0]
    assert first["stored_responses"] >= 1 and first["conversations"] == 1 and first["files"] == 1, first
    assert first["tasks"] == 1 and first["events_deleted"] >= 4, first
    assert not runs[-1]["events_left"] and not runs[-1]["events_deadline_reached"], runs

    needles = {"prompt": prompt.encode(), "org": org_id.encode()}
    db = stack.var_dir / "switchyard.db"
    deadline = time.monotonic() + 30  # billing deletes the webhooks once it reads organization.erased
    while (tables := _tables(db, needles))["org"] & WEBHOOK_TABLES and time.monotonic() < deadline:
        time.sleep(0.5)
    streams = asyncio.run(_streams(stack.nats_url, needles))
    print("after the erasure, the prompt in:", tables["prompt"], streams["prompt"])
    print("after the erasure, the organisation's id in:", tables["org"], sorted(streams["org"]))
    assert tables["prompt"] == set() and streams["prompt"] == set()
    assert tables["org"] <= KEPT_TABLES, tables["org"] - KEPT_TABLES
    undocumented = {
        s
        for s in streams["org"]
        if not (s.startswith("SWITCHYARD ") and s.split(" ", 1)[1].startswith(KEPT_SUBJECTS))
        and not s.split(" ", 1)[1].startswith(KEPT_BUCKETS)
    }
    assert undocumented == set(), sorted(undocumented)
