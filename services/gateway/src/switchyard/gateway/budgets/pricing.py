"""Costs from the policy's price table: the worst case a request could cost (reserved before it runs) and
what it did cost (settled after)."""

from __future__ import annotations

import math

from switchyard.common.events import ChatRequest, TaskCompleted
from switchyard.common.policy import ModelSpec, Policy

MICRO = 1_000_000  # spend is counted in micro-USD: integers, so compare-and-set sums are exact
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def prompt_tokens(request: ChatRequest) -> int:
    """A deliberately generous estimate (no tokenizer at the gateway): 1 token per 4 characters."""
    chars = sum(len(m.text()) for m in request.messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(request.messages)


def output_tokens(request: ChatRequest, *, default_max_tokens: int) -> int:
    return request.max_tokens or default_max_tokens


def candidates(policy: Policy, *, model: str, providers: set[str]) -> list[ModelSpec]:
    """The models that could serve `model`: all available ones for `auto`; for a pass-through name with no
    price of its own, every model of its provider (the dearest then bounds it)."""
    if model == "auto":
        return [m for m in policy.models if m.provider in providers]
    spec = policy.model(model)
    if spec is not None:
        return [spec]
    provider = model.partition("/")[0]
    return [m for m in policy.models if m.provider == provider] or list(policy.models)


def worst_case_micro(
    policy: Policy, request: ChatRequest, *, providers: set[str], default_max_tokens: int
) -> int:
    prompt = prompt_tokens(request)
    output = output_tokens(request, default_max_tokens=default_max_tokens)
    models = candidates(policy, model=request.model, providers=providers)
    worst = max((m.cost(prompt, output) for m in models), default=0.0)
    return math.ceil(worst * MICRO)


def actual_micro(policy: Policy, done: TaskCompleted) -> int | None:
    """The real cost, or None when the model has no price here (the reservation then stands)."""
    if done.cache is not None:  # answered from the gateway's cache: no provider was paid
        return 0
    spec = policy.model(done.model)
    if spec is None:
        return None
    return math.ceil(spec.cost(done.usage.prompt_tokens, done.usage.completion_tokens) * MICRO)
