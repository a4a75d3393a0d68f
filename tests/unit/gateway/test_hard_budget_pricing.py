"""What a hard budget reserves for a chat task (`budgets.pricing`): every call the router may run for it
at once (a race's racers, a cascade's two steps) at the dearest models, and, when what is left pays for
less, the longest answer that fits."""

from __future__ import annotations

import math

import pytest

from switchyard.common.events import ChatMessage, ChatRequest
from switchyard.common.policy import load_policy
from switchyard.gateway.budgets import pricing

pytestmark = pytest.mark.unit
POLICY = load_policy()
EVERYTHING = {m.provider for m in POLICY.models}


def _request(**extra: object) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content="x" * 400)], **extra)  # type: ignore[arg-type]


def test_an_auto_task_answered_whole_reserves_every_racer() -> None:
    racing = POLICY.strategies
    assert pricing.covered_calls(POLICY, _request(), strategies=racing, providers=EVERYTHING) == 2
    for one in (_request(stream=True), _request(n=2), _request(model="openai/gpt-6-sol")):
        assert pricing.covered_calls(POLICY, one, strategies=racing, providers=EVERYTHING) == 1
    neither = racing.model_copy(
        update={
            "parallel": racing.parallel.model_copy(update={"enabled": False}),
            "cascade": racing.cascade.model_copy(update={"enabled": False}),
        }
    )
    assert pricing.covered_calls(POLICY, _request(), strategies=neither, providers=EVERYTHING) == 1
    assert pricing.covered_calls(POLICY, _request(), strategies=racing, providers={"local"}) == 1  # one model

    request = _request(max_tokens=100)
    prompt = pricing.prompt_tokens(request)
    costs = sorted((m.worst_cost(prompt, 100) for m in POLICY.chat_models()), reverse=True)
    two = pricing.worst_case_micro(POLICY, request, providers=EVERYTHING, default_max_tokens=4096, calls=2)
    assert two == pytest.approx((costs[0] + costs[1]) * pricing.MICRO, abs=1)


def test_what_is_left_pays_for_the_longest_answer_that_fits() -> None:
    request = _request(model="openai/gpt-6-sol")
    spec = POLICY.model("openai/gpt-6-sol")
    assert spec is not None
    prompt = pricing.prompt_tokens(request)
    left = pricing.worst_case_micro(
        POLICY, request, providers=EVERYTHING, default_max_tokens=0, prompt=prompt, answer=1000
    )
    cap = pricing.affordable_answer(
        POLICY, request, providers=EVERYTHING, prompt=prompt, left=left, most=4096
    )
    assert cap >= 1000 and spec.worst_cost(prompt, cap + 1) * pricing.MICRO > left
    assert (
        pricing.affordable_answer(POLICY, request, providers=EVERYTHING, prompt=prompt, left=0, most=4096)
        == 0
    )
    assert pricing.answer_tokens(request, default_max_tokens=4096) == 4096
    assert pricing.answer_tokens(_request(max_tokens=50), default_max_tokens=4096) == 50


def test_a_cheaper_candidate_pays_for_more_within_the_same_reservation() -> None:
    """An `auto` answer capped near its budget's end at what the dearest candidate pays for: each cheaper
    candidate gets its own longer cap (up to what was asked) whose worst case fits the same reservation;
    before, every model was sent the dearest's cap."""
    request = _request(model="auto")
    prompt = pricing.prompt_tokens(request)
    left = pricing.worst_case_micro(
        POLICY, request, providers=EVERYTHING, default_max_tokens=0, prompt=prompt, answer=1000
    )
    cap = pricing.affordable_answer(
        POLICY, request, providers=EVERYTHING, prompt=prompt, left=left, most=4096
    )
    reserved = pricing.worst_case_micro(
        POLICY, request, providers=EVERYTHING, default_max_tokens=0, prompt=prompt, answer=cap
    )
    caps = pricing.model_caps(
        POLICY, request, providers=EVERYTHING, prompt=prompt, reserved=reserved, cap=cap, most=4096
    )
    assert caps and max(caps.values()) == 4096  # the cheapest pay for all that was asked
    for model, own in caps.items():
        spec = POLICY.model(model)
        assert spec is not None and cap < own <= 4096
        assert math.ceil(spec.worst_cost(prompt, own) * pricing.MICRO) <= reserved
        assert own == 4096 or math.ceil(spec.worst_cost(prompt, own + 1) * pricing.MICRO) > reserved
