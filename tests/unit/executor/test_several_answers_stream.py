"""Several answers (`n`) in one streamed call, parsed by index: each answer's reasoning, text and tool
calls under its own index, however the provider interleaves them, and a stream that ends before every
answer did is a failure, not a shorter reply."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import (
    AnswerEnd,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings

pytestmark = pytest.mark.unit
CALL = ProviderCall(model="m", messages=(ChatMessage(role="user", content="Hi"),), n=2)


def _provider(name: str, *events: Any) -> OpenAIProvider | GeminiProvider:
    """The provider, served `events` as its stream (the upstream stand-in: an httpx mock transport)."""
    body = b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n" for e in events)
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body)),
        base_url="http://upstream.test/",
    )
    if name == "openai":
        return OpenAIProvider(
            OpenAISettings(api_key="sk-test", base_url="http://upstream.test/v1"), client=client
        )
    return GeminiProvider(GeminiSettings(api_key="AIza-test", base_url="http://upstream.test"), client=client)


async def _parts(provider: OpenAIProvider | GeminiProvider, call: ProviderCall = CALL) -> list[StreamPart]:
    try:
        return [part async for part in provider.stream(call)]
    finally:
        await provider.aclose()


def _choice(index: int, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


async def test_openai_answers_keep_their_own_reasoning_text_and_tool_calls() -> None:
    call = {"index": 0, "id": "call_1", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    parts = await _parts(
        _provider(
            "openai",
            _choice(1, reasoning_content="Oslo? "),
            _choice(0, content="Paris"),
            _choice(1, content="Let me look."),
            _choice(1, tool_calls=[call]),
            _choice(0, "stop", content="."),
            _choice(1, "tool_calls"),
            b"[DONE]",
        )
    )
    shown = [(type(p).__name__, p.choice, p.text) for p in parts if isinstance(p, TextDelta | ThinkingDelta)]
    assert shown == [
        ("ThinkingDelta", 1, "Oslo? "),
        ("TextDelta", 0, "Paris"),
        ("ThinkingDelta", 1, ""),  # the block ends, unsigned, as the answer's text begins
        ("TextDelta", 1, "Let me look."),
        ("TextDelta", 0, "."),
    ]
    final = parts[-1]
    assert isinstance(final, Reply) and (final.content, final.finish_reason, final.tool_calls) == (
        "Paris.",
        "stop",
        (),
    )
    (other,) = final.other_choices
    assert (other.content, other.finish_reason) == ("Let me look.", "tool_calls")
    assert [c.function.name for c in other.tool_calls or []] == ["weather"]
    assert [b.thinking for b in other.thinking or []] == ["Oslo? "]
    # each answer ends at the chunk of its finish reason, with its tool calls, as the reply holds them
    assert parts[4:8] == [
        ToolCallDelta(0, '{"city": "Oslo"}', "call_1", "weather", choice=1),  # as it came
        TextDelta(".", (), 0),
        AnswerEnd(0, "stop"),
        AnswerEnd(1, "tool_calls", tuple(other.tool_calls or ())),
    ]


async def test_a_single_openai_answer_ends_with_its_reply_alone() -> None:
    events = (_choice(0, content="Paris"), _choice(0, "stop", content="."), b"[DONE]")
    parts = await _parts(_provider("openai", *events), call=replace(CALL, n=1))
    assert [type(p).__name__ for p in parts] == ["TextDelta", "TextDelta", "Reply"]


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        # cut: the second answer never finished, and no [DONE]
        ((_choice(0, "stop", content="Paris."), _choice(1, content="Oslo")), "network"),
        # finished, yet one answer of the two asked for never came
        ((_choice(0, "stop", content="Paris."), b"[DONE]"), "bad_response"),
    ],
)
async def test_an_openai_stream_without_every_answer_fails(events: tuple[Any, ...], kind: str) -> None:
    with pytest.raises(ProviderError) as failed:
        await _parts(_provider("openai", *events))
    assert failed.value.kind == kind


def _candidates(*candidates: dict[str, Any]) -> dict[str, Any]:
    return {"candidates": list(candidates), "modelVersion": "m"}


def _candidate(text: str, index: int | None = None, finish: str | None = None) -> dict[str, Any]:
    """A streamed candidate; the first's `index` left out, as Google's JSON leaves out zeros."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if index:
        candidate["index"] = index
    if finish:
        candidate["finishReason"] = finish
    return candidate


async def test_gemini_candidates_by_their_index_also_several_in_one_response() -> None:
    usage = {"promptTokenCount": 3, "candidatesTokenCount": 4}
    parts = await _parts(
        _provider(
            "gemini",
            _candidates(_candidate("Oslo", 1), _candidate("Paris")),
            _candidates(_candidate(".", finish="STOP")),
            {**_candidates(_candidate(", I think.", 1, "MAX_TOKENS")), "usageMetadata": usage},
        )
    )
    assert [(p.choice, p.text) for p in parts if isinstance(p, TextDelta)] == [
        (0, "Paris"),  # each response's candidates in the order of their index
        (1, "Oslo"),
        (0, "."),
        (1, ", I think."),
    ]
    assert parts[2:6] == [  # each candidate ends with the part that carries its finish reason
        TextDelta(".", (), 0),
        AnswerEnd(0, "stop"),
        TextDelta(", I think.", (), 1),
        AnswerEnd(1, "length"),
    ]
    final = parts[-1]
    assert isinstance(final, Reply) and final.content == "Paris." and final.usage.completion_tokens == 4
    assert [(c.content, c.finish_reason) for c in final.other_choices] == [("Oslo, I think.", "length")]


async def test_a_gemini_stream_cut_before_a_candidate_finished_fails() -> None:
    with pytest.raises(ProviderError) as failed:
        await _parts(
            _provider("gemini", _candidates(_candidate("Paris.", finish="STOP"), _candidate("Oslo", 1)))
        )
    assert failed.value.kind == "network"


async def test_a_gemini_candidates_end_names_its_function_calls_as_the_reply_does() -> None:
    """Gemini gives its function calls no id: each gets a new one, made once, so the calls sent with the
    candidate's end are the reply's (a tool result sent back finds its thought signature under it)."""
    call = {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"}
    parts = await _parts(
        _provider(
            "gemini",
            _candidates(
                _candidate("Paris."),
                {"index": 1, "content": {"role": "model", "parts": [call]}, "finishReason": "STOP"},
            ),
            _candidates(_candidate("", finish="STOP")),
        )
    )
    (end,) = [p for p in parts if isinstance(p, AnswerEnd) and p.choice == 1]
    final = parts[-1]
    assert isinstance(final, Reply)
    (other,) = final.other_choices
    assert end.finish_reason == other.finish_reason == "tool_calls"
    assert end.tool_calls == tuple(other.tool_calls or ()) and len(end.tool_calls) == 1
    assert set(final.carry) == {end.tool_calls[0].id}
