"""Costs from the policy's price table: the worst case a request could cost (reserved before it runs) and
what it did cost (settled after). A chat request's tokens are its prompt and the most output it can bring;
an embedding request's, its inputs only (vectors are not priced as output)."""

from __future__ import annotations

import math

import orjson

from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    EmbeddingRequest,
    TaskCompleted,
    TaskFailed,
    ToolSpec,
    Usage,
)
from switchyard.common.media_tokens import media_tokens
from switchyard.common.policy import ModelSpec, Policy, Strategies

MICRO = 1_000_000  # spend is counted in micro-USD: integers, so compare-and-set sums are exact
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3  # the reply's priming (`<|start|>assistant<|message|>`), as OpenAI counts it
TOKENS_PER_TOOL = 4  # a tool definition's or a tool call's framing beside its JSON
TOKENS_PER_INPUT = 1  # an embedding input's own token beyond its text's (rounding up each short text)


def prompt_tokens(request: ChatRequest | EmbeddingRequest) -> int:
    """A deliberately generous estimate (no tokenizer at the gateway; `text_tokens`) of what the provider is
    sent and bills as prompt: the messages, the tool calls in them and the tools offered (each
    function's JSON, as `switchyard.common.tokens.count_prompt` counts them) and the reply's priming."""
    if isinstance(request, EmbeddingRequest):
        return sum(text_tokens(text) + TOKENS_PER_INPUT for text in request.input)
    return TOKENS_PER_REPLY + message_tokens(request.messages) + tool_tokens(request.tools or [])


def tool_specs(tools: list[ToolSpec]) -> list[str]:
    """Each tool's function (name, description, JSON schema) as the JSON the estimates read."""
    return [orjson.dumps(t.function.model_dump(exclude_none=True)).decode() for t in tools]


def tool_tokens(tools: list[ToolSpec]) -> int:
    """Tokens of the tools offered: each function's JSON and its framing."""
    return text_tokens(*tool_specs(tools)) + TOKENS_PER_TOOL * len(tools)


def text_tokens(*texts: str) -> int:
    """Tokens of `texts`: 1 per 4 ASCII characters (English, code, JSON: cl100k counts 3.7-4.4 characters a
    token), 1 per other character (Chinese, Japanese: about 1 a character; Arabic 0.8, Cyrillic 0.5; where
    a quarter each reserved a quarter of what such a prompt costs)."""
    ascii_chars = other = 0
    for text in texts:
        plain = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
        ascii_chars += plain
        other += len(text) - plain
    return math.ceil(ascii_chars / CHARS_PER_TOKEN) + other


def message_tokens(messages: list[ChatMessage]) -> int:
    """Messages' tokens: their text's and their tool calls' (name and arguments), as `text_tokens`, and
    their images' and PDFs', as the count endpoints and the router count them (`media_tokens`: the most
    any provider's rule counts)."""
    texts: list[str] = []
    calls = 0
    for m in messages:
        texts.append(m.text())
        for call in m.tool_calls or ():
            texts += (call.function.name, call.function.arguments)
            calls += 1
    return (
        text_tokens(*texts)
        + TOKENS_PER_MESSAGE * len(messages)
        + TOKENS_PER_TOOL * calls
        + media_tokens(messages)
    )


def output_tokens(request: ChatRequest | EmbeddingRequest, *, default_max_tokens: int) -> int:
    """The most output a request can bring: each of its answers (`n`) up to `answer_tokens`. Embeddings
    have none."""
    if isinstance(request, EmbeddingRequest):
        return 0
    return answer_tokens(request, default_max_tokens=default_max_tokens) * request.n


def answer_tokens(request: ChatRequest, *, default_max_tokens: int) -> int:
    """The most output one answer can bring: its `max_tokens`, which bounds thinking too; without one, a
    model that thinks may write the default and its thinking budget (as the Anthropic adapter allows
    it). Under a hard budget it is what each provider is sent (`TaskBudget.max_output_tokens`)."""
    if request.max_tokens is not None:
        return request.max_tokens
    thinking = request.reasoning.budget() if request.reasoning is not None else 0
    return default_max_tokens + thinking


def covered_calls(
    policy: Policy, request: ChatRequest | EmbeddingRequest, *, strategies: Strategies, providers: set[str]
) -> int:
    """The billed calls a task's reservation must cover (`strategies`: its tenant's): the most the router
    may run for it at once. An `auto` chat task answered whole with one answer may be raced (`fan_out`
    racers, each billed) or cascaded (a rejected step billed beside the next); any other runs one call
    at a time (fallbacks after failures, which no provider charges)."""
    if not isinstance(request, ChatRequest) or request.model != "auto" or request.stream or request.n > 1:
        return 1
    calls = max(
        strategies.parallel.fan_out if strategies.parallel.enabled else 1,
        2 if strategies.cascade.enabled else 1,
    )
    return max(1, min(calls, len(candidates(policy, model="auto", providers=providers))))


def affordable_answer(
    policy: Policy,
    request: ChatRequest,
    *,
    providers: set[str],
    prompt: int,
    left: int,
    most: int,
) -> int:
    """The longest answer (tokens, at most `most`) whose worst case on one call fits `left` micro-USD
    (0: not even the prompt does)."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        cost = worst_case_micro(
            policy, request, providers=providers, default_max_tokens=0, prompt=prompt, answer=mid
        )
        low, high = (mid, high) if cost <= left else (low, mid - 1)
    return low


def candidates(policy: Policy, *, model: str, providers: set[str]) -> list[ModelSpec]:
    """The chat models that could serve `model`: all available ones for `auto`; for a pass-through name
    with no price of its own, every chat model of its provider (the dearest then bounds it)."""
    chat = policy.chat_models()
    if model == "auto":
        return [m for m in chat if m.provider in providers]
    spec = policy.model(model)
    if spec is not None:
        return [spec]
    provider = model.partition("/")[0]
    return [m for m in chat if m.provider == provider] or chat


def embedding_candidates(policy: Policy, *, model: str, providers: set[str]) -> list[ModelSpec]:
    """The models that could serve an embedding task naming `model`: it, and the available embedding
    models of its vector space (a fallback); for a pass-through name with no price of its own, the
    embedding models of its provider (else all its models, else every model: the dearest bounds it)."""
    spec = policy.model(model)
    if spec is not None:
        space = spec.space()
        same = [m for m in policy.embedding_models() if m.space() == space and m.provider in providers]
        return [spec, *(m for m in same if m.id != spec.id)]
    provider = model.partition("/")[0]
    mine = [m for m in policy.models if m.provider == provider]
    return [m for m in mine if m.embeds] or mine or list(policy.models)


def admitted_prompt_tokens(
    policy: Policy, request: ChatRequest | EmbeddingRequest, *, providers: set[str], prompt: int | None = None
) -> int:
    """`prompt_tokens` (`prompt`, when already counted), but for a task the router may cut to fit
    (`truncation: "auto"`: a conversation past every window): no more than the largest context window of
    the models that could serve it, the most a provider is sent (the router cuts to that window, less the
    reply)."""
    prompt = prompt_tokens(request) if prompt is None else prompt
    if isinstance(request, EmbeddingRequest) or request.truncation != "auto":
        return prompt
    windows = [m.context_window for m in candidates(policy, model=request.model, providers=providers)]
    return min(prompt, max(windows)) if windows else prompt


def worst_case_micro(
    policy: Policy,
    request: ChatRequest | EmbeddingRequest,
    *,
    providers: set[str],
    default_max_tokens: int,
    prompt: int | None = None,
    answer: int | None = None,
    calls: int = 1,
) -> int:
    """The most `request` can cost (micro-USD) on the models that could serve it; `prompt`: its
    `prompt_tokens`, when already counted (a prompt's images and PDFs are read to count them); `answer`:
    each answer's output cap, when not `answer_tokens`'s; `calls`: the calls billed at once (a race's
    racers: the dearest `calls` models, each its worst case)."""
    prompt = prompt_tokens(request) if prompt is None else prompt
    output = output_tokens(request, default_max_tokens=default_max_tokens)
    if isinstance(request, EmbeddingRequest):
        models = embedding_candidates(policy, model=request.model, providers=providers)
    else:
        models = candidates(policy, model=request.model, providers=providers)
        output = output if answer is None else answer * request.n
    cut = isinstance(request, ChatRequest) and request.truncation == "auto"  # each sent what fits its window
    costs = sorted(
        (m.worst_cost(min(prompt, m.context_window) if cut else prompt, output) for m in models), reverse=True
    )
    return math.ceil(sum(costs[:calls]) * MICRO)


def model_caps(
    policy: Policy,
    request: ChatRequest,
    *,
    providers: set[str],
    prompt: int,
    reserved: int,
    cap: int,
    most: int,
) -> dict[str, int]:
    """The candidates whose price pays for a longer answer than `cap` (the dearest's) within one call's
    `reserved` micro-USD: each one's longest answer (at most `most`, what was asked), by model id."""
    cut = request.truncation == "auto"
    caps: dict[str, int] = {}
    for spec in candidates(policy, model=request.model, providers=providers):
        sent = min(prompt, spec.context_window) if cut else prompt
        low, high = cap, most
        while low < high:
            mid = (low + high + 1) // 2
            fits = math.ceil(spec.worst_cost(sent, mid * request.n) * MICRO) <= reserved
            low, high = (mid, high) if fits else (low, mid - 1)
        if low > cap:
            caps[spec.id] = low
    return caps


def billed(outcome: TaskCompleted | TaskFailed) -> list[tuple[str, Usage]]:
    """Every call billing charges for the task: the delivered answer (of a completed task not answered from
    the gateway's cache, which paid no provider) and the calls billed besides it (`charged`: a race's
    losers, a cascade's rejected steps, calls cut by a cancellation)."""
    calls = [(c.model, c.usage) for c in outcome.charged]
    if isinstance(outcome, TaskCompleted) and outcome.cache is None:
        calls.append((outcome.model, outcome.usage))
    return calls


def actual_micro(policy: Policy, outcome: TaskCompleted | TaskFailed) -> int | None:
    """The real cost, or None when a model billed has no price here (the reservation then stands)."""
    total = 0.0
    for model, usage in billed(outcome):
        spec = policy.model(model)
        if spec is None:
            return None
        total += spec.cost(
            usage.prompt_tokens,
            usage.completion_tokens,
            read=usage.cache_read_tokens,
            written=usage.cache_write_tokens,
        )
    return math.ceil(total * MICRO)
