"""Pure parts of tenancy, limits and budgets: roles and scopes, windows and headers, prices."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    EmbeddingRequest,
    Reasoning,
    TaskCompleted,
    Usage,
)
from switchyard.common.policy import Policy, load_policy
from switchyard.common.wants import Want
from switchyard.gateway import admission
from switchyard.gateway.access import roles
from switchyard.gateway.budgets import pricing
from switchyard.gateway.budgets.service import accounts
from switchyard.gateway.errors import RateLimited
from switchyard.gateway.key_policy import KeyPolicy
from switchyard.gateway.limits.headers import duration, ratelimit_headers
from switchyard.gateway.limits.models import Check, Limits, checks, window
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit


def test_effective_scopes_are_the_key_scopes_the_role_allows() -> None:
    assert roles.effective_scopes("admin", "inference admin") == {"inference", "admin"}
    assert roles.effective_scopes("member", "inference admin audit:read") == {"inference"}
    assert roles.effective_scopes("auditor", "inference admin audit:read") == {"audit:read"}
    assert roles.effective_scopes("nobody", "inference") == frozenset()
    assert roles.default_scopes("billing") == "billing:read"


def test_windows_and_checks() -> None:
    assert window(125.0, 60) == (2, 180.0)
    made = checks(Limits(), now=125.0, tenant_id="t", subject="u", tokens=50, global_requests_per_min=7)
    by = {(c.scope, c.kind): c for c in made}
    assert by[("global", "requests")].limit == 7
    assert by[("org", "requests")].key == "req.org.t.2" and by[("org", "requests")].limit == 1_000
    assert by[("user", "tokens")].delta == 50 and by[("user", "tokens")].limit == 1_000_000
    assert by[("org", "concurrency")].reset_at is None and by[("org", "concurrency")].limit == 20


def test_openai_style_headers_name_the_tightest_limit() -> None:
    assert [duration(s) for s in (0.02, 1, 59.2, 360, 3725)] == ["20ms", "1s", "1m0s", "6m0s", "1h2m5s"]
    made = checks(Limits(), now=120.0, tenant_id="t", subject="u", tokens=10, global_requests_per_min=10_000)
    used = {"global": 5, "org": 990, "user": 3}
    seen = [(c, used[c.scope] if c.kind == "requests" else 10) for c in made]
    headers = ratelimit_headers(seen, now=150.0)
    assert headers["x-ratelimit-limit-requests"] == "1000"
    assert headers["x-ratelimit-remaining-requests"] == "10"
    assert headers["x-ratelimit-reset-requests"] == "30s"
    assert headers["x-ratelimit-limit-tokens"] == "1000000"


def _request(max_tokens: int | None, model: str = "auto") -> ChatRequest:
    return ChatRequest(
        model=model, messages=[ChatMessage(role="user", content="x" * 400)], max_tokens=max_tokens
    )


def test_worst_case_is_the_dearest_available_candidate() -> None:
    policy = load_policy()
    local = {"local"}
    everything = {m.provider for m in policy.models}
    assert pricing.prompt_tokens(_request(10)) == 107  # 100 of text, 4 of its message, 3 of the reply's
    assert pricing.worst_case_micro(policy, _request(100), providers=local, default_max_tokens=4096) == 0
    dearest = max(policy.models, key=lambda m: m.worst_cost(107, 100))
    expected = dearest.worst_cost(107, 100) * pricing.MICRO
    # a prompt the provider writes whole to its cache costs more than plain input (Anthropic: 1.25x)
    assert dearest.worst_cost(107, 100) == pytest.approx(dearest.cost(107, 100, written=107))
    assert dearest.worst_cost(107, 100) > dearest.cost(107, 100)
    assert pricing.worst_case_micro(policy, _request(100), providers=everything, default_max_tokens=4096) == (
        pytest.approx(expected, abs=1)
    )
    no_max = pricing.worst_case_micro(policy, _request(None), providers=everything, default_max_tokens=4096)
    assert no_max > pricing.worst_case_micro(
        policy, _request(100), providers=everything, default_max_tokens=4096
    )
    done = TaskCompleted(
        task_id="t",
        tenant_id="t",
        model=dearest.id,
        provider=dearest.provider,
        tier=dearest.tier,
        content="",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1000, completion_tokens=1000),
        attempts=1,
        latency_ms=1,
        completed_at=datetime.now(UTC),
    )
    assert pricing.actual_micro(policy, done) == pytest.approx(
        (dearest.input_per_1k + dearest.output_per_1k) * pricing.MICRO, abs=1
    )
    assert pricing.actual_micro(policy, done.model_copy(update={"model": "openai/unpriced"})) is None
    # budgets settle at what billing charges: prompt-cache reads at the model's cached price
    hits = Usage(prompt_tokens=1000, completion_tokens=1000, cache_read_tokens=800)
    assert pricing.actual_micro(policy, done.model_copy(update={"usage": hits})) == pytest.approx(
        (0.2 * dearest.input_per_1k + 0.8 * dearest.cache_read_price() + dearest.output_per_1k)
        * pricing.MICRO,
        abs=1,
    )
    assert dearest.cache_read_price() < dearest.input_per_1k


def test_a_task_the_router_may_cut_is_admitted_at_what_fits_a_window() -> None:
    """`truncation: "auto"` (a conversation past every window): the router sends at most the largest window
    of the models that could serve it, and each model what fits its own; admission counted the whole
    prompt, so a tokens-per-minute limit or a budget refused what would have been sent cut."""
    policy = load_policy()
    everything = {m.provider for m in policy.models}
    huge = ChatRequest(
        model="auto", messages=[ChatMessage(role="user", content="x" * 40_000_000)], max_tokens=10
    )
    cut = huge.model_copy(update={"truncation": "auto"})
    largest = max(m.context_window for m in policy.chat_models())
    assert pricing.admitted_prompt_tokens(policy, huge, providers=everything) == pricing.prompt_tokens(huge)
    assert pricing.admitted_prompt_tokens(policy, cut, providers=everything) == largest
    whole = pricing.worst_case_micro(policy, huge, providers=everything, default_max_tokens=4096)
    fitted = pricing.worst_case_micro(policy, cut, providers=everything, default_max_tokens=4096)
    dearest = max(policy.chat_models(), key=lambda m: m.worst_cost(min(10_000_002, m.context_window), 10))
    assert fitted < whole
    assert fitted == pytest.approx(dearest.worst_cost(dearest.context_window, 10) * pricing.MICRO, abs=1)


def _embedder(id_: str, price: float, space: str | None = None) -> dict[str, object]:
    provider, _, name = id_.partition("/")
    embedding: dict[str, object] = {"dimensions": 1536} | ({"space": space} if space else {})
    return {
        "id": id_, "provider": provider, "upstream": name, "tier": "fast", "input_per_1k": price,
        "output_per_1k": 0.0, "context_window": 8191, "embedding": embedding,
    }  # fmt: skip


def test_an_embedding_request_reserves_its_inputs_at_the_dearest_model_of_its_space() -> None:
    """Input tokens only (no output), at the dearest of the model named and the available models it may
    fall back to (the same vector space); never at a dearer model of another space, nor a chat model."""
    policy = Policy.model_validate(
        {
            "version": "t",
            "models": [
                {
                    "id": "openai/gpt-x",
                    "provider": "openai",
                    "upstream": "gpt-x",
                    "tier": "premium",
                    "input_per_1k": 0.5,
                    "output_per_1k": 2.0,
                    "context_window": 100000,
                },
                _embedder("openai/te3", 0.00002, space="te3"),
                _embedder("azure/te3", 0.00004, space="te3"),  # the same model elsewhere: dearer
                _embedder("gemini/ge", 0.1),  # another space: never a fallback, however dear
            ],
        }
    )
    request = EmbeddingRequest(model="openai/te3", input=["x" * 400, "y" * 40])
    assert pricing.prompt_tokens(request) == (100 + 1) + (10 + 1)  # 4 characters a token, one more each
    assert pricing.output_tokens(request, default_max_tokens=4096) == 0
    everything = {"openai", "azure", "gemini"}

    def worst(req: EmbeddingRequest, providers: set[str]) -> int:
        return pricing.worst_case_micro(policy, req, providers=providers, default_max_tokens=4096)

    assert worst(request, everything) == pytest.approx(112 * 0.00004 / 1000 * pricing.MICRO, abs=1)
    # the fallback's provider not announced: the model named bounds it
    assert worst(request, {"openai"}) == pytest.approx(112 * 0.00002 / 1000 * pricing.MICRO, abs=1)
    # a pass-through name (unpriced): the dearest embedding model of its provider, not its chat model
    passed = request.model_copy(update={"model": "openai/text-embedding-ada-002"})
    assert worst(passed, everything) == pytest.approx(112 * 0.00002 / 1000 * pricing.MICRO, abs=1)
    # and a chat task's `auto` never counts an embedding model, however dear its input
    assert [m.id for m in pricing.candidates(policy, model="auto", providers=everything)] == ["openai/gpt-x"]
    # settled at what it used: its prompt tokens at the model that answered
    done = TaskCompleted(
        task_id="t", tenant_id="t", model="azure/te3", provider="azure", tier="fast", content="",
        finish_reason="stop", usage=Usage(prompt_tokens=50_000, completion_tokens=0), attempts=1,
        latency_ms=1, completed_at=datetime.now(UTC),
    )  # fmt: skip
    assert pricing.actual_micro(policy, done) == 2_000  # 50K tokens at $0.00004 per 1K: $0.002
    assert sum(u.total_tokens for _, u in pricing.billed(done)) == 50_000


def test_a_thinking_request_without_max_tokens_reserves_its_budget_too() -> None:
    thinking = _request(None).model_copy(update={"reasoning": Reasoning(budget_tokens=10_000)})
    assert pricing.output_tokens(thinking, default_max_tokens=4096) == 14_096
    assert pricing.output_tokens(_request(None), default_max_tokens=4096) == 4096
    # a max_tokens bounds the thinking with the answer, as the providers count it
    bounded = _request(2000).model_copy(update={"reasoning": Reasoning(effort="high")})
    assert pricing.output_tokens(bounded, default_max_tokens=4096) == 2000


def test_budget_accounts_by_plan_and_period() -> None:
    plans = {"free": 0.5, "pro": 10.0, "enterprise": None}
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    free = Principal(tenant_id="t", api_key_id="k", user_id="u", key_prefix="p", plan="free")
    org, user = accounts(free, now=now, plan_daily_usd=plans)
    assert (org.key, org.ceiling, org.ends_at) == (
        "spend.org.t.202612",
        None,
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert (user.key, user.ceiling) == ("spend.user.u.20261231", 500_000)
    rich = Principal(
        tenant_id="t",
        api_key_id="k",
        user_id=None,
        key_prefix="p",
        plan="enterprise",
        org_monthly_budget_usd=100,
    )
    org, user = accounts(rich, now=now, plan_daily_usd=plans)
    assert org.ceiling == 100_000_000 and user.ceiling is None and user.key == "spend.user.key-k.20261231"


def test_the_prompt_estimate_counts_tool_definitions_and_tool_calls() -> None:
    """A coding agent's turn: short messages, 24 tools and a file written by a tool call. They are prompt
    tokens the provider bills (cl100k counts 18,044 here); the estimate counted 16, so the budget reserved
    a fifth of what the request cost on Claude Sonnet 5.5 and a hard budget was overshot by the rest."""
    from switchyard.common.tokens import count_prompt

    words = "Reads a file from the local filesystem. You can access any file directly by using this tool. "
    schema = {
        "type": "object",
        "properties": {f"p{j}": {"type": "string", "description": "a path " * 9} for j in range(8)},
    }
    tools = [
        {
            "type": "function",
            "function": {"name": f"Tool{i}", "description": words * 20, "parameters": schema},
        }
        for i in range(24)
    ]
    code = Path(admission.__file__).read_text()  # a file of real code
    written = {
        "id": "c1",
        "function": {"name": "Write", "arguments": orjson.dumps({"content": code}).decode()},
    }
    messages = [
        ChatMessage(role="user", content="write the file"),
        ChatMessage(role="assistant", tool_calls=[written]),  # type: ignore[list-item]
        ChatMessage(role="tool", tool_call_id="c1", content="ok"),
    ]
    request = ChatRequest(model="auto", messages=messages, tools=tools, max_tokens=1024)  # type: ignore[arg-type]
    real = count_prompt(request)
    assert 0.9 * real <= pricing.prompt_tokens(request) <= 1.2 * real
    # the rest of the conversation is the same estimate as before (guardrails' size counts tool calls too)
    assert pricing.message_tokens(messages[:1]) == 4 + 4
    assert pricing.message_tokens(messages) > len(code) // 4


@pytest.mark.parametrize(
    ("text", "cl100k"),
    [
        (
            "这是一个关于预算的问题\uff0c请详细回答。我们需要了解每个团队的月度支出以及如何控制超支。" * 20,
            820,
        ),
        (
            "これは予算についての質問です。各チームの毎月の支出と超過の管理方法を知る必要があります。" * 20,
            860,
        ),
        (
            "هذا سؤال حول الميزانية، يرجى الإجابة بالتفصيل. نحتاج إلى معرفة النفقات الشهرية لكل فريق." * 20,
            1220,
        ),
    ],
)
def test_the_prompt_estimate_is_not_a_quarter_of_a_non_latin_prompt(text: str, cl100k: int) -> None:
    """Four characters a token holds for English and code; Chinese, Japanese and Arabic take about a token a
    character (cl100k), so a quarter of a character each reserved a quarter of their prompt's cost."""
    from switchyard.common.tokens import count_text

    assert count_text(text) == cl100k
    chat = ChatRequest(model="auto", messages=[ChatMessage(role="user", content=text)])
    assert (
        0.9 * cl100k
        <= pricing.prompt_tokens(chat) - pricing.TOKENS_PER_MESSAGE - pricing.TOKENS_PER_REPLY
        <= 1.5 * cl100k
    )
    embed = EmbeddingRequest(model="m", input=[text])
    assert 0.9 * cl100k <= pricing.prompt_tokens(embed) <= 1.5 * cl100k


def _refused_while_the_users_minute_is_full(
    tokens: int, others: Callable[[Check], tuple[bool, int]]
) -> RateLimited:
    """The refusal of a request of `tokens` by a user (30 requests a minute, all used) through a key of 100
    tokens a minute; `others`: what every other counter answered."""
    made = checks(
        Limits(user_requests_per_min=30),
        now=120.0,
        tenant_id="t",
        subject="u",
        tokens=tokens,
        global_requests_per_min=10_000,
        key=("k", KeyPolicy(tpm_limit=100)),
    )
    results = [(False, 30) if (c.scope, c.kind) == ("user", "requests") else others(c) for c in made]
    wanted = [(c, Want(None, c.key, c.delta, c.limit, c.reset_at)) for c in made]  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as refused:
        RateLimiter.ticket(wanted, results, tokens=tokens, now=150.0)
    return refused.value


def test_a_request_larger_than_a_whole_limit_is_told_so_even_when_another_window_is_full() -> None:
    """Waiting for the full window would not help: the refusal says the request is too large, with no
    Retry-After and `x-should-retry: false`, rather than "try again in 30s" (after which it would be
    refused again), whichever limit is the broader."""
    refused = _refused_while_the_users_minute_is_full(
        200, lambda c: (False, 0) if c.scope == "key" else (True, c.delta)
    )
    assert refused.message.startswith("Request too large for tokens per min (key): limit 100")
    assert "retry-after" not in refused.headers and refused.retry is False


def test_a_refusals_headers_count_nothing_of_the_refused_request() -> None:
    """A refused request keeps nothing of what the other counters granted it (it is given back): its
    `x-ratelimit-remaining-*` are what is left without it (every other counter granted it, its own units
    included in what it says is in use)."""
    headers = _refused_while_the_users_minute_is_full(16, lambda c: (True, c.delta)).headers
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == ("100", "100")
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("30", "0")
