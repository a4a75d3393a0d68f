"""A key's budget bounds what it and every key minted from it spend together, as a sub-account's: keys a
key with a $0.10 budget mints (each with $0.10, as wide as the ceiling allows) count against its budget
too, at admission and settlement, on every replica (two admissions with their own leases of the same
JetStream KV counters), whether the minter was rotated since or a minted key mints again; its rate limits
are shared the same way. Real SQLite and PostgreSQL, real nats-server."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.budgets import budgets_bucket
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import ChargedCall, TaskFailed, Usage
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.gateway.access import service
from switchyard.gateway.access.ceiling import Ceiling
from switchyard.gateway.access.models import KeyCreate
from switchyard.gateway.admission import Admission
from switchyard.gateway.budgets.service import Account, Budgets, _exhausted
from switchyard.gateway.db import migrations
from switchyard.gateway.errors import RateLimited
from switchyard.gateway.limits.control import Control, control_bucket
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.limits.models import Limits
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.tenants import KeyVerifier, Principal, create_api_key, create_tenant, create_user
from tests.integration.gateway.harness import wait_for_a_fresh_minute
from tests.integration.gateway.test_admission import MODEL, POLICY, REQUEST

pytestmark = pytest.mark.integration

BUDGET = {"max_budget_usd": 0.10}  # a lifetime budget: two requests' worst case ($0.05 each)


async def _replica(js: object, limits: Limits | None = None) -> tuple[Admission, Leases, IntCounters]:
    """One gateway replica's admission: its own leases of the shared counters."""
    limit_bucket = await counter_bucket(js, "test-limits", ttl_s=3600)  # type: ignore[arg-type]
    spend = IntCounters(await counter_bucket(js, "test-spend", ttl_s=3600))  # type: ignore[arg-type]
    budget_leases = Leases(spend, divisor=64)
    limiter = RateLimiter(
        Leases(IntCounters(limit_bucket)),
        Leases(SlotTable(limit_bucket)),
        limits or Limits(),
        Control(await control_bucket(js)),  # type: ignore[arg-type]
    )
    budgets = Budgets(budget_leases, await budgets_bucket(js), plan_daily_usd={"enterprise": None})  # type: ignore[arg-type]
    return Admission(POLICY, limiter, budgets, default_max_tokens=256), budget_leases, spend


def _billed(tenant_id: str) -> TaskFailed:
    """What billing charged: the whole worst case, 100 output tokens at $0.50/1K ($0.05)."""
    return TaskFailed(
        task_id="t", tenant_id=tenant_id, error_code="task_cancelled", error_message="cancelled",
        failed_at=datetime.now(UTC),
        charged=[ChargedCall(model=MODEL, usage=Usage(prompt_tokens=0, completion_tokens=100))],
    )  # fmt: skip


async def _spend_all(replicas: list[Admission], principals: list[Principal]) -> int:
    """Sends each key's requests, alternately to each replica, until each is refused; micro-USD billed."""
    billed = 0
    for i, principal in enumerate(principals * 4):
        admission = replicas[i % len(replicas)]
        try:
            admitted = await admission.admit(principal, REQUEST, providers={"local"})
        except RateLimited as refused:
            assert refused.code == "budget_exceeded", refused.message
            continue
        await admission.settle_with(admitted, _billed(principal.tenant_id))
        billed += 50_000
    return billed


async def test_minted_keys_spend_no_more_than_the_minting_keys_budget(
    db_url: str, nats_server: NatsServer
) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    nc = await nats.connect(nats_server.url)
    try:
        org = await create_tenant(sessions, name="acme", plan="enterprise")
        admin = await create_user(sessions, tenant_id=org.id, email="a@acme.test", role="admin")
        secret, _ = await create_api_key(
            sessions, tenant_id=org.id, user_id=admin.id, name="parent", scopes="inference admin",
            policy=BUDGET,
        )  # fmt: skip
        verifier = KeyVerifier(sessions, ttl_s=0)
        parent = await verifier.verify(secret)
        assert parent is not None

        async def mint(by: Principal, name: str) -> Principal:
            plaintext, _ = await service.create_key(
                sessions, tenant_id=org.id, spec=KeyCreate.model_validate({"name": name, **BUDGET}),
                default_user_id=by.user_id, grantable=by.scopes, ceiling=Ceiling.of(by),
            )  # fmt: skip
            minted = await verifier.verify(plaintext)
            assert minted is not None
            return minted

        children = [await mint(parent, f"child {i}") for i in range(3)]
        grandchild = await mint(children[0], "grandchild")
        # The parent rotated since it minted them: its successor and its old key's grace spend with them.
        new_secret, _, _ = await service.rotate_key(
            sessions, tenant_id=org.id, key_id=parent.api_key_id, grace_s=60
        )
        rotated = await verifier.verify(new_secret)
        assert rotated is not None
        also = await mint(rotated, "minted after the rotation")

        replicas = [await _replica(nc.jetstream()) for _ in range(2)]
        billed = await _spend_all([r[0] for r in replicas], [*children, grandchild, also, rotated])
        for _, leases, _ in replicas:
            await leases.tidy(everything=True)
        spend = replicas[0][2]
        stored = await spend.read(f"spend.key.{parent.api_key_id}.total")
        assert billed <= 100_000, f"${billed / 1e6:.2f} billed on a $0.10 budget (five keys minted from it)"
        assert stored == billed == 100_000
    finally:
        await nc.close()
        await engine.dispose()


def test_the_refusal_names_the_minting_keys_budget() -> None:
    spent = Account("minter", "spend.key.k.total", 100_000, None, "lifetime")
    assert "the minting key's" in _exhausted(spent, 100_000, worst_case=50_000).message


async def test_minted_keys_share_the_minting_keys_rate_limit(db_url: str, nats_server: NatsServer) -> None:
    """A key allowed 3 requests a minute mints two keys allowed 3 each: the three keys make 3 requests a
    minute together, through two replicas (9 before: each key counted its own)."""
    await migrations().upgrade(db_url)
    # the windows are whole UTC minutes: a run across a minute's end would count in two (a CI run under
    # load admitted 5)
    wait_for_a_fresh_minute()
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    nc = await nats.connect(nats_server.url)
    try:
        org = await create_tenant(sessions, name="acme", plan="enterprise")
        admin = await create_user(sessions, tenant_id=org.id, email="a@acme.test", role="admin")
        secret, _ = await create_api_key(
            sessions, tenant_id=org.id, user_id=admin.id, name="parent", scopes="inference admin",
            policy={"rpm_limit": 3},
        )  # fmt: skip
        verifier = KeyVerifier(sessions, ttl_s=0)
        parent = await verifier.verify(secret)
        assert parent is not None
        keys = [parent]
        for i in range(2):
            plaintext, _ = await service.create_key(
                sessions, tenant_id=org.id, spec=KeyCreate(name=f"child {i}"), default_user_id=admin.id,
                grantable=parent.scopes, ceiling=Ceiling.of(parent),
            )  # fmt: skip
            child = await verifier.verify(plaintext)
            assert child is not None and child.key_policy is not None and child.key_policy.rpm_limit == 3
            keys.append(child)
        replicas = [(await _replica(nc.jetstream(), Limits(user_requests_per_min=1000)))[0] for _ in range(2)]
        admitted = 0
        for i, principal in enumerate(keys * 3):
            try:
                ticket = await replicas[i % 2].admit(principal, REQUEST, providers={"local"})
            except RateLimited as refused:
                assert refused.code == "rate_limit_exceeded", refused.message
                continue
            admitted += 1
            await ticket.close()
        assert admitted == 3, f"{admitted} requests in a minute on a key allowed 3 and the keys it minted"
    finally:
        await nc.close()
        await engine.dispose()
