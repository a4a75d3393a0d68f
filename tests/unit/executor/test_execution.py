"""A routed task through `execute`: the chain, the per-attempt records, the chunks, the outcome."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchyard.common import subjects
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Choice,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
    Usage,
)
from switchyard.common.streaming import decode_chunk
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.base import Provider, Reply
from switchyard.executor.providers.testing import BreaksAfter, ScriptedProvider, fails, reply
from switchyard.executor.resilience.breaker import BreakerConfig, LocalBreakers
from switchyard.executor.resilience.limits import Limit, LocalRateLimits
from switchyard.executor.resilience.retry import RetryPolicy
from switchyard.executor.tool_state import LocalToolStates, ToolStates

pytestmark = pytest.mark.unit
GOOGLE_KEY = "AIzaSyD" + "x" * 32  # the form of a Google API key: AIza and 35 more
FAST = ExecutionPolicy(
    retry=RetryPolicy(max_retries=1, base_s=0.001, cap_s=0.002), call_timeout_s=5, task_deadline_s=10
)


def routed(*providers: str, stream: bool = False, deadline: datetime | None = None, n: int = 1) -> TaskRouted:
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        user_id="u1",
        request=ChatRequest(
            messages=[ChatMessage(role="user", content="Capital of France?")], stream=stream, n=n
        ),
        deadline=deadline,
        submitted_at=datetime.now(UTC),
    )
    candidates = [
        RouteCandidate(model=f"{p}/model-{p}", provider=p, upstream_model=f"model-{p}", tier="fast")
        for p in providers
    ]
    classification = Classification(
        type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
    )
    decision = RoutingDecision(tier="fast", candidates=candidates, policy_version="t")
    return TaskRouted(task=task, classification=classification, decision=decision)


class Bus:
    def __init__(self) -> None:
        self.calls: list[tuple[int, ProviderCallRecorded]] = []
        self.chunks: list[bytes] = []

    async def report(self, attempt: int, record: ProviderCallRecorded) -> None:
        self.calls.append((attempt, record))

    async def publish(self, subject: str, data: bytes) -> None:
        assert subject == subjects.chunk_subject("acme", "t1")
        self.chunks.append(data)

    def decoded(self) -> list[dict[str, object]]:
        return [decode_chunk(c).model_dump(exclude_defaults=True) for c in self.chunks]


async def run(
    task: TaskRouted,
    providers: dict[str, Provider],
    bus: Bus,
    *,
    breakers: LocalBreakers | None = None,
    policy: ExecutionPolicy = FAST,
    limits: LocalRateLimits | None = None,
    cancelled: Callable[[], bool] | None = None,
    interruptible: Callable[[], AbstractContextManager[object]] = nullcontext,
    states: ToolStates | None = None,
) -> TaskCompleted | TaskFailed:
    chunks = ChunkSink(bus.publish, tenant_id="acme", task_id="t1") if task.task.request.stream else None
    return await execute(
        task,
        providers=providers,
        breakers=breakers or LocalBreakers(),
        policy=policy,
        report=bus.report,
        chunks=chunks,
        limits=limits,
        cancelled=cancelled,
        interruptible=interruptible,
        states=states,
    )


async def test_falls_through_to_the_next_candidate_and_records_every_attempt() -> None:
    bus = Bus()
    down = ScriptedProvider(fails("overloaded", "503 from upstream"))
    outcome = await run(
        routed("openai", "local"), {"openai": down, "local": ScriptedProvider(reply("Paris."))}, bus
    )
    assert isinstance(outcome, TaskCompleted)
    assert (outcome.content, outcome.model, outcome.provider, outcome.attempts) == (
        "Paris.",
        "local/model-local",
        "local",
        3,
    )
    assert [(n, c.provider, c.outcome) for n, c in bus.calls] == [
        (1, "openai", "overloaded"),
        (2, "openai", "overloaded"),
        (3, "local", "ok"),
    ]
    assert bus.calls[0][1].error == "503 from upstream" and bus.calls[2][1].usage.completion_tokens == 1
    assert {c.user_id for _, c in bus.calls} == {"u1"}  # billing charges a billable call to the task's user
    assert down.calls[0].model == "model-openai"


async def test_every_candidate_failing_is_a_task_failure_naming_each() -> None:
    bus = Bus()
    outcome = await run(
        routed("openai", "anthropic"),
        {"openai": ScriptedProvider(fails("auth")), "anthropic": ScriptedProvider(fails("timeout"))},
        bus,
    )
    assert isinstance(outcome, TaskFailed)
    assert outcome.error_code == "provider_timeout" and outcome.attempts == 3
    assert "openai/model-openai: auth" in outcome.error_message


async def test_a_chain_at_capacity_fails_with_the_last_providers_retry_after() -> None:
    """A Retry-After longer than the retry policy waits for moves on at once; the failure keeps it, so the
    gateway can tell the client when to come back. Other failures say nothing of when."""
    busy = {
        "openai": ScriptedProvider(fails("overloaded", retry_after=12)),
        "local": ScriptedProvider(fails("rate_limited", retry_after=30.5)),
    }
    outcome = await run(routed("openai", "local"), busy, Bus())
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_rate_limited"
    assert outcome.retry_after_s == 30.5 and outcome.attempts == 2  # neither retried: both waits too long
    broken = await run(routed("openai"), {"openai": ScriptedProvider(fails("network"))}, Bus())
    assert isinstance(broken, TaskFailed) and broken.retry_after_s is None


async def test_a_candidate_this_executor_cannot_call_is_skipped_without_a_call_record() -> None:
    bus = Bus()
    outcome = await run(routed("gemini", "local"), {"local": ScriptedProvider(reply("hi"))}, bus)
    assert isinstance(outcome, TaskCompleted) and outcome.attempts == 1
    assert [c.provider for _, c in bus.calls] == ["local"]


async def test_content_policy_fails_the_task_without_trying_elsewhere() -> None:
    bus = Bus()
    other = ScriptedProvider(reply("hi"))
    outcome = await run(
        routed("openai", "local"), {"openai": ScriptedProvider(fails("content_policy")), "local": other}, bus
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_content_policy"
    assert other.calls == []


async def test_an_open_breaker_skips_the_candidate() -> None:
    breakers = LocalBreakers(BreakerConfig(failure_threshold=2))
    down = ScriptedProvider(fails("overloaded"))
    providers: dict[str, Provider] = {"openai": down, "local": ScriptedProvider(reply("hi"))}
    await run(routed("openai", "local"), providers, Bus(), breakers=breakers)
    bus = Bus()
    outcome = await run(routed("openai", "local"), providers, bus, breakers=breakers)
    assert isinstance(outcome, TaskCompleted) and len(down.calls) == 2
    assert [c.provider for _, c in bus.calls] == ["local"]


async def test_a_stream_sends_numbered_deltas_then_done() -> None:
    bus = Bus()
    outcome = await run(
        routed("local", stream=True), {"local": ScriptedProvider(reply("The capital is Paris."))}, bus
    )
    assert isinstance(outcome, TaskCompleted)
    chunks = bus.decoded()
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert "".join(str(c.get("delta", "")) for c in chunks) == "The capital is Paris." == outcome.content
    assert chunks[-1] == {"seq": len(chunks) - 1, "done": True, "finish_reason": "stop"}
    assert not any("finish_reason" in c for c in chunks[:-1])  # a single answer's end is the done chunk
    assert bus.calls[0][1].ttft_ms is not None


@pytest.mark.parametrize("stream", [False, True])
async def test_several_answers_come_from_one_call_and_are_all_in_the_outcome(stream: bool) -> None:
    """`n` = 3: the provider is asked once, for three answers; a stream is sent each answer's text as it
    comes, interleaved, each chunk under its answer's `choice` (left out for the first), then done; the
    outcome has them all, streamed or not the same."""
    bus = Bus()
    others = (
        Choice(content="Paris, France.", finish_reason="stop"),
        Choice(content="Paris", finish_reason="length"),
    )
    provider = ScriptedProvider(replace(reply("The capital is Paris."), other_choices=others))
    outcome = await run(routed("local", stream=stream, n=3), {"local": provider}, bus)
    assert isinstance(outcome, TaskCompleted)
    assert [c.n for c in provider.calls] == [3]
    assert outcome.content == "The capital is Paris." and outcome.other_choices == list(others)
    assert len(bus.calls) == 1 and bus.calls[0][1].outcome == "ok"
    if stream:
        chunks = bus.decoded()
        assert [c["seq"] for c in chunks] == list(range(len(chunks)))
        texts = [(c.get("choice", 0), c["delta"]) for c in chunks if c.get("delta")]
        assert texts[:4] == [(0, "The "), (1, "Paris, "), (2, "Paris"), (0, "capital ")]  # as they came
        assert {i: "".join(t for j, t in texts if j == i) for i in (0, 1, 2)} == {
            0: "The capital is Paris.",
            1: "Paris, France.",
            2: "Paris",
        }
        assert chunks[0] == {"seq": 0, "model": "local/model-local"}  # the model begun, before any text
        assert b'"choice"' not in bus.chunks[1] and b'"choice":1' in bus.chunks[2]
        # each answer's end as soon as it ended, after its last text (the shortest first), then done
        ends = [
            (n, c.get("choice", 0), c["finish_reason"])
            for n, c in enumerate(chunks[:-1])
            if "finish_reason" in c
        ]
        assert [(i, reason) for _, i, reason in ends] == [(2, "length"), (1, "stop"), (0, "stop")]
        texts_at = [(n, c.get("choice", 0)) for n, c in enumerate(chunks) if c.get("delta")]
        last_text = {i: max(n for n, j in texts_at if j == i) for i in (0, 1, 2)}
        assert all(last_text[i] < n for n, i, _ in ends)
        assert ends[0][0] < last_text[0]  # the third answer's end came while the first went on
        assert chunks[-1] == {"seq": len(chunks) - 1, "done": True, "finish_reason": "stop"}


async def test_a_cascade_sends_several_answers_whole_each_under_its_choice() -> None:
    """A judged strategy sends its chosen reply whole once judged: every answer's text in one chunk."""
    bus = Bus()
    others = (Choice(content="Paris, France.", finish_reason="stop"),)
    provider = ScriptedProvider(replace(reply("The capital is Paris."), other_choices=others))
    task = routed("local", "openai", stream=True, n=2)
    task = task.model_copy(update={"decision": task.decision.model_copy(update={"strategy": "cascade"})})
    outcome = await run(task, {"local": provider, "openai": provider}, bus)
    assert isinstance(outcome, TaskCompleted) and outcome.other_choices == list(others)
    shown = [(c.get("choice", 0), c.get("delta") or c["finish_reason"]) for c in bus.decoded()]
    assert shown == [  # each answer's text, then its end; then the stream's
        (0, "The capital is Paris."),
        (0, "stop"),
        (1, "Paris, France."),
        (1, "stop"),
        (0, "stop"),
    ]
    assert bus.decoded()[-1]["done"] is True


async def test_a_stream_failing_before_text_resets_and_fails_over() -> None:
    bus = Bus()
    outcome = await run(
        routed("openai", "local", stream=True),
        {"openai": ScriptedProvider(fails("auth")), "local": ScriptedProvider(reply("Paris."))},
        bus,
    )
    assert isinstance(outcome, TaskCompleted) and outcome.provider == "local"
    chunks = bus.decoded()
    assert chunks[0] == {"seq": 0, "model": "openai/model-openai"}  # the first candidate, begun
    assert chunks[1] == {"seq": 1, "reset": True, "model": "local/model-local"}
    assert chunks[2] == {"seq": 2, "delta": "Paris."}
    assert chunks[-1]["done"] is True


async def test_a_stream_breaking_after_text_ends_with_an_error_chunk_and_a_failure() -> None:
    bus = Bus()
    broken = ScriptedProvider(BreaksAfter("The capital", fails("network", "connection reset")))
    fallback = ScriptedProvider(reply("unused"))
    outcome = await run(routed("openai", "local", stream=True), {"openai": broken, "local": fallback}, bus)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_network"
    chunks = bus.decoded()
    assert chunks[-1]["error"] == {"code": "provider_network", "message": "connection reset"}
    assert not any(c.get("done") for c in chunks) and fallback.calls == []


async def test_a_task_past_its_own_deadline_ends_expired_without_a_call() -> None:
    bus = Bus()
    past = datetime.now(UTC) - timedelta(seconds=1)
    local = ScriptedProvider(reply("late"))
    outcome = await run(routed("local", deadline=past), {"local": local}, bus)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_expired", outcome
    assert local.calls == [] and bus.calls == [] and outcome.charged == []


async def test_secrets_in_upstream_messages_are_redacted_from_events() -> None:
    bus = Bus()
    leaky = ScriptedProvider(fails("auth", "Incorrect API key provided: sk-proj-abcdefghijklmnop1234"))
    outcome = await run(routed("openai"), {"openai": leaky}, bus)
    assert isinstance(outcome, TaskFailed)
    assert "abcdefghijklmnop" not in outcome.error_message
    assert "abcdefghijklmnop" not in (bus.calls[0][1].error or "")
    # OpenAI quotes the wrong key masked, its first and last characters shown (seen on make run through a
    # stand-in; the form OpenAI's 401 has in the wild: sk-WRQsP*****...*****xQBt)
    masked = "Incorrect API key provided: sk-WRQsP" + "*" * 39 + "xQBt. You can find your API key at ..."
    bus = Bus()
    outcome = await run(routed("openai"), {"openai": ScriptedProvider(fails("auth", masked))}, bus)
    assert isinstance(outcome, TaskFailed)
    for text in (outcome.error_message, bus.calls[0][1].error or ""):
        assert "WRQsP" not in text and "xQBt" not in text and "Incorrect API key provided" in text


async def test_a_provider_over_its_rate_limit_is_skipped_without_a_call() -> None:
    limits = LocalRateLimits({"openai": Limit(rpm=1)})
    openai, local = ScriptedProvider(reply("from openai")), ScriptedProvider(reply("from local"))
    providers: dict[str, Provider] = {"openai": openai, "local": local}
    first = await run(routed("openai", "local"), providers, Bus(), limits=limits)
    bus = Bus()
    second = await run(routed("openai", "local"), providers, bus, limits=limits)
    assert isinstance(first, TaskCompleted) and first.provider == "openai"
    assert isinstance(second, TaskCompleted) and second.provider == "local"
    assert len(openai.calls) == 1 and [c.provider for _, c in bus.calls] == ["local"]


async def test_a_call_settles_its_tpm_to_its_usage_as_its_adapter_s_provider_counts_cache_reads() -> None:
    """Both limits (provider, model) keep the tokens the call used, not its max_tokens; an adapter whose
    provider leaves cache reads out of its limits (Anthropic's) has them left out here too."""
    from switchyard.executor.providers.anthropic import AnthropicProvider

    class Cached(ScriptedProvider):
        limits_count_cache_reads = AnthropicProvider.limits_count_cache_reads

    used = Usage(prompt_tokens=10_000, completion_tokens=20, cache_read_tokens=9_000)
    answer = Reply(content="ok", finish_reason="stop", model="m", usage=used)
    for provider, kept in ((ScriptedProvider(answer), 10_020), (Cached(answer), 1_020)):
        # a stopped clock: a bucket refilling as the test runs (1,667 tokens a second) would let the last
        # token through on a slow machine
        limits = LocalRateLimits(
            {"openai": Limit(tpm=100_000), "openai/model-openai": Limit(tpm=100_000)}, clock=lambda: 0.0
        )
        task = routed("openai")
        request = task.task.request.model_copy(update={"max_tokens": 50_000})
        task = task.model_copy(update={"task": task.task.model_copy(update={"request": request})})
        assert isinstance(await run(task, {"openai": provider}, Bus(), limits=limits), TaskCompleted)
        for key in ("openai", "openai/model-openai"):
            assert await limits.try_acquire(key, tokens=100_000 - kept)
            assert not await limits.try_acquire(key, tokens=1)


async def test_tool_call_state_is_looked_up_for_adapters_that_carry_it_and_kept_after() -> None:
    """What an answer carried beside its tool calls is kept for the tenant; the next task holding those
    calls gets it in its provider call, looked up only when a candidate's adapter uses such state."""
    from dataclasses import replace

    from switchyard.common.events import FunctionCall, ToolCall

    states = LocalToolStates()
    call = ToolCall(id="call_g1", function=FunctionCall(name="get_weather", arguments="{}"))
    signed = replace(
        reply(""), tool_calls=(call,), finish_reason="tool_calls", carry={"call_g1": {"sig": "s1"}}
    )
    gemini = ScriptedProvider(signed, reply("21C, sunny."))
    gemini.carries = True  # type: ignore[attr-defined]
    first = routed("gemini")
    await run(first, {"gemini": gemini}, Bus(), states=states)
    assert await states.load("acme", ["call_g1"]) == {"call_g1": {"sig": "s1"}}
    assert await states.load("other-org", ["call_g1"]) == {}

    history = [
        ChatMessage(role="user", content="Weather?"),
        ChatMessage(role="assistant", tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="call_g1", content="21C"),
    ]
    second = first.model_copy(
        update={"task": first.task.model_copy(update={"request": ChatRequest(messages=history)})}
    )
    outcome = await run(second, {"gemini": gemini}, Bus(), states=states)
    assert isinstance(outcome, TaskCompleted) and gemini.calls[-1].carried == {"call_g1": {"sig": "s1"}}

    class Counting(LocalToolStates):
        loads = 0

        async def load(self, tenant_id: str, call_ids: list[str]) -> dict[str, dict[str, str]]:
            Counting.loads += 1
            return await super().load(tenant_id, call_ids)

    claude = ScriptedProvider(reply("21C."))  # no `carries`: nothing to look up
    plain = second.model_copy(update={"decision": routed("anthropic").decision})
    await run(plain, {"anthropic": claude}, Bus(), states=Counting())
    assert Counting.loads == 0 and claude.calls[-1].carried == {}


async def test_a_secret_in_a_streams_error_is_redacted_from_its_error_chunk() -> None:
    bus = Bus()
    leaky = ScriptedProvider(
        BreaksAfter("The capital", fails("overloaded", "proxy said x-goog-api-key: " + GOOGLE_KEY))
    )
    outcome = await run(routed("gemini", stream=True), {"gemini": leaky}, bus)
    assert isinstance(outcome, TaskFailed) and GOOGLE_KEY not in outcome.error_message
    error = bus.decoded()[-1]["error"]
    assert isinstance(error, dict) and GOOGLE_KEY not in error["message"]
