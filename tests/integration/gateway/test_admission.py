"""Admission takes the rate-limit counters and the budget reservation at once (real JetStream KV): a
request refused by either leaves the other as it was, and the refusal a client sees is the same as when
they ran in turn (the rate limit's first)."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import kv
from switchyard.common.budgets import budgets_bucket
from switchyard.common.events import ChargedCall, ChatRequest, TaskBudget, TaskCompleted, TaskFailed, Usage
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.common.policy import Policy
from switchyard.gateway.admission import Admission
from switchyard.gateway.budgets.service import Budgets
from switchyard.gateway.errors import RateLimited, retry_header
from switchyard.gateway.limits.control import Control, control_bucket
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.limits.models import Limits
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.integration

# One priced model: output $0.50 per 1K tokens, so max_tokens=100 reserves $0.05.
POLICY = Policy.model_validate(
    {
        "version": "test-priced",
        "models": [
            {
                "id": "local/smollm2-135m-instruct",
                "provider": "local",
                "upstream": "smollm2-135m-instruct",
                "tier": "local",
                "input_per_1k": 0.0,
                "output_per_1k": 0.5,
                "context_window": 8192,
            }
        ],
    }
)
MODEL = "local/smollm2-135m-instruct"
REQUEST = ChatRequest(model="auto", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
ALICE = Principal(tenant_id="acme", api_key_id="k1", user_id="alice", key_prefix="sk-1", plan="free")


async def _admission(
    js: object, limits: Limits, policy: Policy = POLICY
) -> tuple[Admission, SlotTable, IntCounters, list[Leases]]:
    limit_bucket = await counter_bucket(js, "test-limits", ttl_s=3600)  # type: ignore[arg-type]
    slots = SlotTable(limit_bucket)
    spend = IntCounters(await counter_bucket(js, "test-spend", ttl_s=3600))  # type: ignore[arg-type]
    leases = [Leases(IntCounters(limit_bucket)), Leases(slots), Leases(spend, divisor=64)]
    limiter = RateLimiter(leases[0], leases[1], limits, Control(await control_bucket(js)))  # type: ignore[arg-type]
    budgets = Budgets(leases[2], await budgets_bucket(js))  # type: ignore[arg-type]
    return Admission(policy, limiter, budgets, default_max_tokens=256), slots, spend, leases


async def _spent(spend: IntCounters, leases: list[Leases]) -> list[int]:
    """The stored spend counters, once this replica's unused leases are handed back."""
    for lease in leases:
        await lease.tidy(everything=True)
    keys = await kv.keys(spend.kv)  # the counters the gateway keeps (not nats-py's racy `keys()`)
    return sorted([await spend.read(k) for k in keys])


async def _slots(slots: SlotTable, leases: list[Leases]) -> int:
    for lease in leases:
        await lease.tidy(everything=True)
    return await slots.read("conc.org.acme")


async def test_a_request_refused_by_its_rate_limit_leaves_the_budget_as_it_was(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        admission, slots, spend, leases = await _admission(nc.jetstream(), Limits(user_requests_per_min=1))
        first = await admission.admit(ALICE, REQUEST, providers={"local"})
        assert first.reservation is not None and first.reservation.reserved == 50_000
        with pytest.raises(RateLimited) as refused:
            await admission.admit(ALICE, REQUEST, providers={"local"})
        assert refused.value.code == "rate_limit_exceeded"
        assert await _spent(spend, leases) == [50_000, 50_000]  # org and user: the first one's reservation
        await first.close()
        assert await _spent(spend, leases) == [0, 0]
        assert await _slots(slots, leases) == 0
    finally:
        await nc.close()


async def test_a_request_refused_by_its_budget_gives_back_its_rate_limit_counters(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        admission, slots, spend, leases = await _admission(nc.jetstream(), Limits())
        held = [await admission.admit(ALICE, REQUEST, providers={"local"}) for _ in range(10)]  # $0.50
        with pytest.raises(RateLimited) as refused:
            await admission.admit(ALICE, REQUEST, providers={"local"})
        assert refused.value.code == "budget_exceeded"
        assert await _slots(slots, leases) == 10  # the refused one's slot is back
        for admitted in held:
            await admitted.close()
        assert await _slots(slots, leases) == 0
        assert await _spent(spend, leases) == [0, 0]
    finally:
        await nc.close()


async def test_settlement_after_the_response_is_tracked_and_drained(nats_server: NatsServer) -> None:
    """Near a limit a give-back is a KV write: `settle_soon` leaves it to a tracked task (the response
    does not wait for it), and `drain` (shutdown) waits for it, so nothing is lost."""
    nc = await nats.connect(nats_server.url)
    try:
        admission, slots, spend, leases = await _admission(nc.jetstream(), Limits(org_concurrent_tasks=2))
        first = await admission.admit(ALICE, REQUEST, providers={"local"})
        assert await slots.read("conc.org.acme") == 1  # 1 of 2: near the ceiling, no spare taken
        admission.settle_soon(first)
        assert first.closed and admission._settling, "the KV write runs after the response"
        await admission.drain()
        assert not admission._settling
        assert await slots.read("conc.org.acme") == 0  # given back without any lease hand-back
        assert await _spent(spend, leases) == [0, 0]
    finally:
        await nc.close()


def _failed(*charged: tuple[int, int]) -> TaskFailed:
    return TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code="task_cancelled",
        error_message="cancelled",
        failed_at=datetime.now(UTC),
        charged=[
            ChargedCall(model=MODEL, usage=Usage(prompt_tokens=p, completion_tokens=c)) for p, c in charged
        ],
    )


async def test_a_task_settles_at_every_call_billing_charges_not_only_its_answer(
    nats_server: NatsServer,
) -> None:
    """Billing charges a cancelled stream's text so far and a race's losers (`billable` calls); the budget
    counter settles at the same sum (it gave a failed task's reservation back in full, and counted only a
    completed task's answer). A failure that charged nothing is released; no outcome at all too."""
    nc = await nats.connect(nats_server.url)
    try:
        admission, _, spend, leases = await _admission(nc.jetstream(), Limits())
        cut = await admission.admit(ALICE, REQUEST, providers={"local"})
        await admission.settle_with(cut, _failed((12, 40)))  # 40 output tokens at $0.50/1K
        assert await _spent(spend, leases) == [20_000, 20_000]

        raced = await admission.admit(ALICE, REQUEST, providers={"local"})
        raced.observe(
            TaskCompleted(
                task_id="t2", tenant_id="acme", model=MODEL, provider="local", tier="local", content="ok",
                finish_reason="stop", usage=Usage(prompt_tokens=12, completion_tokens=20), attempts=2,
                latency_ms=5.0, completed_at=datetime.now(UTC), charged=_failed((12, 30)).charged,
            )
        )  # fmt: skip
        await raced.close()
        assert await _spent(spend, leases) == [45_000, 45_000]  # + the answer's 20 and the loser's 30

        for outcome in (_failed(), None):
            nothing = await admission.admit(ALICE, REQUEST, providers={"local"})
            await admission.settle_with(nothing, outcome)
            assert await _spent(spend, leases) == [45_000, 45_000]
    finally:
        await nc.close()


async def test_a_request_larger_than_a_whole_limit_or_budget_is_told_so_not_to_wait(
    nats_server: NatsServer,
) -> None:
    """A request that could never fit, even in a fresh window or budget, gets no Retry-After (the SDKs
    would wait and send it again) and a message that says to make it smaller."""
    nc = await nats.connect(nats_server.url)
    try:
        admission, _, _, _ = await _admission(nc.jetstream(), Limits(user_tokens_per_day=50))
        with pytest.raises(RateLimited) as huge:
            await admission.admit(ALICE, REQUEST, providers={"local"})  # 100 output tokens and the prompt
        assert huge.value.code == "rate_limit_exceeded" and "retry-after" not in huge.value.headers
        assert retry_header(huge.value) == {"x-should-retry": "false"}  # the SDKs' own retries are off too
        assert huge.value.message.startswith("Request too large for tokens per day (user): limit 50")
    finally:
        await nc.close()


async def test_a_request_the_hard_budget_cannot_pay_for_whole_is_capped_at_what_it_pays_for(
    nats_server: NatsServer,
) -> None:
    """Under a hard budget the output cap a task carries (`TaskBudget`) is the lower of the client's
    `max_tokens` and what is left pays for; only when that is not even a short answer is it refused."""
    nc = await nats.connect(nats_server.url)
    try:
        admission, _, _, _ = await _admission(nc.jetstream(), Limits())
        dear = REQUEST.model_copy(update={"max_tokens": 2000})  # $1.00 of the free plan's $0.50 a day
        capped = await admission.admit(ALICE, dear, providers={"local"})
        assert capped.budget == TaskBudget(max_output_tokens=1000, calls=1)  # all $0.50 pays for
        assert capped.reservation is not None and capped.reservation.reserved == 500_000

        with pytest.raises(RateLimited) as spent:  # nothing is left for a 16-token answer
            await admission.admit(ALICE, REQUEST, providers={"local"})
        assert spent.value.code == "budget_exceeded" and "retry-after" in spent.value.headers
        assert "more than is left of your daily budget ($0.0000 of $0.50)" in spent.value.message
        await capped.close()  # released unused (the refusal took nothing): the next one fits whole
        whole = await admission.admit(ALICE, REQUEST, providers={"local"})
        assert whole.budget == TaskBudget(max_output_tokens=100, calls=1)
        await whole.close()
    finally:
        await nc.close()


async def test_a_cheaper_candidate_is_capped_at_what_the_same_reservation_pays_for_on_it(
    nats_server: NatsServer,
) -> None:
    """An `auto` answer capped at what the dearest candidate pays for ($0.50 of output at $0.50/1K: 1,000
    tokens) gives a candidate at $0.10/1K its own cap, up to the 2,000 asked ($0.20, within the same
    $0.50 reservation); before, it was sent the dearest's 1,000."""
    cheap = POLICY.models[0].model_copy(update={"id": "local/cheap", "output_per_1k": 0.1})
    policy = POLICY.model_copy(update={"models": [*POLICY.models, cheap]})
    nc = await nats.connect(nats_server.url)
    try:
        admission, _, _, _ = await _admission(nc.jetstream(), Limits(), policy)
        capped = await admission.admit(
            ALICE, REQUEST.model_copy(update={"max_tokens": 2000}), providers={"local"}
        )
        assert capped.budget == TaskBudget(max_output_tokens=1000, calls=1, model_caps={"local/cheap": 2000})
        assert capped.reservation is not None and capped.reservation.reserved == 500_000
        await capped.close()
    finally:
        await nc.close()
