"""After a run with secret-looking provider keys, a ledger signing key, API keys (used, guessed, created
and rotated), the tenants' ledger digest keys and the bus's NATS passwords, no secret appears in any log
file, any event on the bus (the events and dead-letter streams, headers included), or any ledger entry."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import nats
import pytest
from nats.js import api
from sqlalchemy import select

from switchyard.audit.models import DigestKey, LedgerEntry
from switchyard.cli import nats_users
from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from tests.chaos.stack import SECRETS
from tests.integration.gateway.harness import auth
from tests.security.conftest import Tenants

pytestmark = pytest.mark.e2e
GUESSED = "sy-GUESSEDsecretKEY0123456789abcdef"


def _fragments(secret: str) -> list[str]:
    """The secret and its tail: a log that cut off a prefix would still leak the rest."""
    return [secret, secret[-20:]] if len(secret) > 24 else [secret]


async def _bus_messages(url: str) -> list[bytes]:
    nc = await nats.connect(url)
    out: list[bytes] = []
    try:
        js = nc.jetstream()
        for stream in (subjects.STREAM_EVENTS, subjects.STREAM_DLQ):
            sub = await js.pull_subscribe(
                ">",
                stream=stream,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE
                ),
            )
            while True:
                try:
                    for m in await sub.fetch(500, timeout=1.0):
                        out.append(m.data + repr(m.headers or {}).encode())
                except (nats.errors.TimeoutError, TimeoutError):
                    if (await sub.consumer_info()).num_pending == 0:
                        break
            await sub.unsubscribe()
    finally:
        await nc.close()
    return out


async def _ledger(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as s:
            rows = (await s.execute(select(LedgerEntry))).scalars().all()
    finally:
        await engine.dispose()
    return [" ".join(str(getattr(r, c.name)) for c in LedgerEntry.__table__.columns) for r in rows]


async def _digest_keys(db_url: str) -> list[str]:
    """Each tenant's digest key as hex and base64 (the forms a careless log or event would show)."""
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as s:
            keys = [k for k in (await s.execute(select(DigestKey.secret))).scalars() if k is not None]
    finally:
        await engine.dispose()
    return [form for k in keys for form in (k.hex(), base64.b64encode(k).decode())]


def test_no_secret_in_logs_events_or_ledger(tenants: Tenants) -> None:
    t = tenants
    stack = t.stack
    with httpx.Client(base_url=stack.base_url, timeout=60) as c:
        admin = auth(t.victim.keys["admin"])
        made = c.post("/v1/admin/keys", json={"name": "leak-check"}, headers=admin).json()
        rotated = c.post(f"/v1/admin/keys/{made['id']}/rotate", json={}, headers=admin)
        new_keys = [made["key"]] + ([rotated.json()["key"]] if rotated.status_code < 300 else [])
        for key in (t.victim.keys["admin"], *new_keys):
            r = c.post(
                "/v1/chat/completions",
                headers=auth(key),
                json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code in (200, 401), r.text  # the rotated-away key is refused
        for guess in (GUESSED, f"Bearer {GUESSED}"):
            assert c.get("/v1/models", headers={"Authorization": f"Bearer {guess}"}).status_code == 401
            assert c.get("/v1/models", headers={"x-api-key": guess}).status_code == 401
    secrets = [*SECRETS, GUESSED, *t.victim.keys.values(), *t.attacker.keys.values(), *new_keys]
    # the embedded run's NATS users' passwords (switchyard up made them; each service logged in with its own)
    nats_passwords = [p.read_text().strip() for p in (stack.var_dir / "nats-auth").glob("*.password")]
    assert len(nats_passwords) == len(nats_users.USERS) + 1  # and another system's, `integrator`
    secrets += nats_passwords
    assert stack.fake.requests, "the providers were called with the key"
    assert any(
        PROVIDER in r.headers.get("authorization", "") for r in stack.fake.requests for PROVIDER in SECRETS
    )

    logs = {p: p.read_text(errors="replace") for p in [*stack.log_dir.glob("*.log"), stack.folder / "up.log"]}
    assert len(logs) >= 7 and all(logs.values())
    events = asyncio.run(_bus_messages(stack.bus_url))
    ledger = asyncio.run(_ledger(stack.db_url))
    assert events and ledger
    digest_keys = asyncio.run(_digest_keys(stack.db_url))
    assert digest_keys, "the tenants' prompts were digested with their keys"
    secrets += digest_keys
    leaks = []
    for secret in secrets:
        for fragment in _fragments(secret):
            leaks += [f"log {Path(p).name}" for p, text in logs.items() if fragment in text]
            leaks += [f"event #{i}" for i, e in enumerate(events) if fragment.encode() in e]
            leaks += [f"ledger entry #{i}" for i, e in enumerate(ledger) if fragment in e]
    where = f"{len(logs)} logs, {len(events)} events, {len(ledger)} entries"
    print(f"\n{len(secrets)} secrets looked for in {where}")
    assert not leaks, sorted(set(leaks))
