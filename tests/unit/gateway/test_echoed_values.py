"""A refusal quotes what the client sent at most 80 characters of it: a `type`, a MIME type, a function's or a
call's name several megabytes long (a body's limit) was sent back whole in the error, and logged whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from switchyard.gateway import completions, messages, responses
from switchyard.gateway.conversations import items
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.gemini.request import parse_request as parse_gemini

pytestmark = pytest.mark.unit
LONG = "x" * 100_000


def _chat(**fields: Any) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields}
    completions.parse_request(orjson.dumps(body), max_prompt_chars=10**6)


def _responses(**fields: Any) -> None:
    responses.parse_request(orjson.dumps({"model": "auto", **fields}), max_prompt_chars=10**6)


def _anthropic(content: Any) -> None:
    body = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": content}]}
    messages.parse_request(orjson.dumps(body), max_prompt_chars=10**6)


def _gemini(part: dict[str, Any]) -> None:
    body = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "a"}, part]}]})
    parse_gemini(body, model="auto", stream=False, max_prompt_chars=10**6)


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
REFUSED: list[Callable[[], None]] = [
    lambda: _chat(messages=[{"role": "user", "content": [{"type": LONG}]}]),
    lambda: _chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": LONG}}),
    lambda: _chat(
        messages=[{"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": LONG, "content": "1"}]
    ),
    lambda: _responses(input=[{"type": LONG}]),
    lambda: _responses(input=[{"role": "user", "content": [{"type": LONG}]}]),
    lambda: _responses(input="a", tools=[{"type": LONG}]),
    lambda: _responses(input=[{"type": "function_call_output", "call_id": LONG, "output": "1"}]),
    lambda: _anthropic([{"type": LONG}]),
    lambda: _gemini({"inlineData": {"mimeType": LONG, "data": "AAAA"}}),
    lambda: items.added([{"type": LONG}], held=set()),
]


@pytest.mark.parametrize("refuse", REFUSED)
def test_a_refusal_quotes_a_long_value_cut_short(refuse: Callable[[], None]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        refuse()
    assert "x" * 80 in refused.value.message and len(refused.value.message) < 600, refused.value.message[:200]
