"""A model's refusal (OpenAI's structured outputs answer `content: null, refusal: "..."`, streamed as
`delta.refusal`; the Responses API as a `refusal` content part) is kept as the reply's `refusal`, apart
from its text: LangChain raises OpenAIRefusalError on it, pydantic-ai a ContentFilterError, instructor
stops retrying; read as text (or lost) they see an answer that fails to parse and ask again."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import (
    AnswerEnd,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    reply_parts,
)
from switchyard.executor.providers.openai import OpenAIProvider
from switchyard.executor.providers.openai import responses as openai_responses
from switchyard.executor.providers.openai import wire as openai_wire
from tests.unit.executor.upstream import openai_streaming

pytestmark = pytest.mark.unit
REFUSAL = "I'm sorry, I can't help with that."
SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "city", "strict": True, "schema": {"type": "object"}},
}
CALL = ProviderCall(
    model="gpt-4o-mini", messages=(ChatMessage(role="user", content="Hi"),), response_format=SCHEMA
)


def _completion(*messages: dict[str, Any]) -> bytes:
    choices = [
        {"index": i, "message": {"role": "assistant", **m}, "logprobs": None, "finish_reason": "stop"}
        for i, m in enumerate(messages)
    ]
    usage = {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17}
    return orjson.dumps({"id": "c", "model": "gpt-4o-mini", "choices": choices, "usage": usage})


def test_a_chat_completion_refusal_is_kept_apart_from_the_text() -> None:
    reply = openai_wire.parse_reply(_completion({"content": None, "refusal": REFUSAL}), CALL)
    assert (reply.content, reply.refusal, reply.finish_reason) == ("", REFUSAL, "stop")
    plain = openai_wire.parse_reply(_completion({"content": '{"name": "Paris"}', "refusal": None}), CALL)
    assert (plain.content, plain.refusal) == ('{"name": "Paris"}', None)


def test_each_of_several_answers_keeps_its_own_refusal() -> None:
    raw = _completion({"content": "{}", "refusal": None}, {"content": None, "refusal": REFUSAL})
    reply = openai_wire.parse_reply(raw, replace(CALL, n=2))
    assert reply.refusal is None
    assert [c.refusal for c in reply.other_choices] == [REFUSAL]


def _chunk(index: int, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


async def _parts(provider: OpenAIProvider, call: ProviderCall) -> list[StreamPart]:
    try:
        return [part async for part in provider.stream(call)]
    finally:
        await provider.aclose()


async def test_a_streamed_refusal_comes_in_pieces_and_is_the_replys_refusal() -> None:
    """As OpenAI streams one: the role with empty content, then `delta.refusal` pieces, never content."""
    parts = await _parts(
        openai_streaming(
            _chunk(0, role="assistant", content="", refusal=None),
            _chunk(0, refusal="I'm sorry, "),
            _chunk(0, refusal="I can't help with that."),
            _chunk(0, "stop"),
            b"[DONE]",
        ),
        CALL,
    )
    assert [p for p in parts if isinstance(p, TextDelta)] == []  # no text: a refusal is not the answer
    final = parts[-1]
    assert isinstance(final, Reply) and (final.content, final.refusal) == ("", REFUSAL)


async def test_one_of_several_streamed_answers_ends_with_its_refusal() -> None:
    parts = await _parts(
        openai_streaming(
            _chunk(0, content="{}"),
            _chunk(1, refusal=REFUSAL),
            _chunk(1, "stop"),
            _chunk(0, "stop"),
            b"[DONE]",
        ),
        replace(CALL, n=2),
    )
    assert AnswerEnd(1, "stop", (), REFUSAL) in parts
    final = parts[-1]
    assert isinstance(final, Reply) and [c.refusal for c in final.other_choices] == [REFUSAL]


def test_a_reply_sent_whole_ends_each_of_several_answers_with_its_refusal() -> None:
    """A cascade's or a race's reply goes out whole: its answers' ends carry their refusals."""
    reply = openai_wire.parse_reply(
        _completion({"content": None, "refusal": REFUSAL}, {"content": "{}", "refusal": None}),
        replace(CALL, n=2),
    )
    assert AnswerEnd(0, "stop", (), REFUSAL) in reply_parts(reply)


def test_a_responses_api_refusal_part_is_the_replys_refusal_not_its_text() -> None:
    message = {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": REFUSAL}]}
    raw = orjson.dumps(
        {"model": "gpt-6.1-sol", "status": "completed", "output": [message], "usage": {"input_tokens": 3}}
    )
    reply = openai_responses.parse_response(raw, CALL)
    assert (reply.content, reply.refusal) == ("", REFUSAL)
