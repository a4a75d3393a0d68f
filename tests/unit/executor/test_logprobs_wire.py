"""Token log probabilities on each provider's wire, without a server: what a call that asks for them sends
(and one that does not), how the answers' tokens read back, whole and streamed, and malformed ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionSpec, Reasoning, TokenLogprob, ToolSpec, TopLogprob
from switchyard.executor.providers.base import ProviderCall, Reply, StreamPart, TextDelta
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.gemini import wire as gemini_wire
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.providers.openai import responses as openai_responses
from switchyard.executor.providers.openai import wire as openai_wire
from switchyard.executor.providers.openai.models import rules_for

pytestmark = pytest.mark.unit
WEATHER = ToolSpec(function=FunctionSpec(name="get_weather", parameters={"type": "object"}))


def _call(model: str = "m", **kw: Any) -> ProviderCall:
    return ProviderCall(model=model, messages=(ChatMessage(role="user", content="Hi"),), **kw)


def _entry(token: str, logprob: float, raw: Any = "utf8", top: list[Any] | None = None) -> dict[str, Any]:
    """OpenAI's entry of a token (`raw`: its bytes; by default its UTF-8, as OpenAI sends)."""
    entry = {"token": token, "logprob": logprob, "bytes": list(token.encode()) if raw == "utf8" else raw}
    return entry if top is None else {**entry, "top_logprobs": top}


def _sse(*events: Any) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n" for e in events)


async def _streamed(provider: OpenAIProvider | GeminiProvider, call: ProviderCall) -> list[StreamPart]:
    try:
        return [part async for part in provider.stream(call)]
    finally:
        await provider.aclose()


def _serving(body: bytes, sent: list[dict[str, Any]] | None = None) -> httpx.AsyncClient:
    """A client whose every request gets `body` (recording the requests' bodies in `sent`)."""

    def answer(request: httpx.Request) -> httpx.Response:
        (sent if sent is not None else []).append(orjson.loads(request.content))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://upstream.test/")


def _openai(body: bytes, sent: list[dict[str, Any]] | None = None) -> OpenAIProvider:
    settings = OpenAISettings(api_key="sk-test", base_url="http://upstream.test/v1")
    return OpenAIProvider(settings, client=_serving(body, sent))


def _gemini(body: bytes) -> GeminiProvider:
    return GeminiProvider(
        GeminiSettings(api_key="AIza-test", base_url="http://upstream.test"), client=_serving(body)
    )


def _texts(parts: list[StreamPart]) -> list[TextDelta]:
    return [p for p in parts if isinstance(p, TextDelta)]


def _final(parts: list[StreamPart]) -> Reply:
    assert isinstance(parts[-1], Reply)
    return parts[-1]


# --- OpenAI chat completions ---


@pytest.mark.parametrize("openai_itself", [False, True])
def test_openai_is_asked_for_logprobs_and_top_logprobs_only_when_the_call_asks(openai_itself: bool) -> None:
    body = openai_wire.request_body(
        _call("gpt-4.1", logprobs=True, top_logprobs=3), stream=False, openai_itself=openai_itself
    )
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    body = openai_wire.request_body(_call("gpt-4.1", logprobs=True), stream=True, openai_itself=openai_itself)
    # a compatible server is told "no alternatives" (llama.cpp's returns no logprobs without it)
    assert body["logprobs"] is True and body.get("top_logprobs") == (None if openai_itself else 0)
    body = openai_wire.request_body(
        _call("gpt-4.1", logprobs=True, top_logprobs=0), stream=False, openai_itself=True
    )
    assert body["top_logprobs"] == 0  # OpenAI's own "no alternatives", as the client asked
    body = openai_wire.request_body(_call("gpt-4.1"), stream=False, openai_itself=openai_itself)
    assert "logprobs" not in body and "top_logprobs" not in body


def test_an_openai_reasoning_model_is_asked_for_logprobs_at_effort_none_or_not_called() -> None:
    """OpenAI's reasoning models return logprobs only at effort none: a call for them goes at none, said
    out loud (GPT-6 defaults to medium), and one the model cannot serve there is refused unsent
    (bad_request, so the executor tries the next candidate) instead of answered without them."""
    asked = {"logprobs": True, "top_logprobs": 2}
    at_default = openai_wire.request_body(_call("gpt-6-sol", **asked), stream=False, openai_itself=True)
    assert at_default["reasoning_effort"] == "none"
    assert at_default["logprobs"] is True and at_default["top_logprobs"] == 2
    none = Reasoning(effort="none")
    at_none = openai_wire.request_body(
        _call("gpt-6-sol", reasoning=none, temperature=0.3, **asked), stream=False, openai_itself=True
    )
    assert at_none["reasoning_effort"] == "none" and at_none["logprobs"] is True
    assert at_none["temperature"] == 0.3  # at none the sampling fields go too
    for model, reasoning, why in (
        ("gpt-6-sol", Reasoning(effort="high"), "only at reasoning effort none"),
        ("gpt-6.1-sol", None, "does not take"),  # no effort none at all
        ("o3", None, "does not take"),
        ("gpt-5-mini", Reasoning(effort="minimal"), "does not take"),
    ):
        with pytest.raises(ProviderError) as refused:
            openai_wire.request_body(
                _call(model, reasoning=reasoning, **asked), stream=False, openai_itself=True
            )
        assert refused.value.kind == "bad_request" and not refused.value.sent and why in str(refused.value)
    # a server copying OpenAI's protocol gets what the client asked, whatever the model's name
    compatible = openai_wire.request_body(_call("gpt-6-sol", **asked), stream=False, openai_itself=False)
    assert compatible["logprobs"] is True and "reasoning_effort" not in compatible
    reply = openai_wire.parse_reply(_completion([{"role": "assistant", "content": "Hi"}]), _call(**asked))
    assert reply.logprobs == ()  # asked for, and the upstream sent none


def _completion(messages: list[dict[str, Any]], logprobs: list[Any] | None = None) -> bytes:
    """A chat completion of these messages, listed last first, each with its `logprobs` (None: null)."""
    choices = [
        {
            "index": i,
            "message": m,
            "finish_reason": "stop",
            "logprobs": (logprobs or [None] * len(messages))[i],
        }
        for i, m in enumerate(messages)
    ]
    return orjson.dumps({"model": "m", "choices": list(reversed(choices))})


def test_each_openai_choice_keeps_its_tokens_with_bytes_only_where_not_the_tokens_utf8() -> None:
    first = [
        _entry("Caf", -0.1, top=[_entry("Caf", -0.1), _entry("Bar", -2.5)]),
        _entry("\\xc3", -0.2, [195], top=[_entry("\\xc3", -0.2, [195])]),  # half of "é": its own bytes
        _entry("\\xa9", -0.3, [169], top=[]),
        _entry(" ☕", -1.5, top=[_entry(" ☕", -1.5, None)]),  # multi-byte but whole: its UTF-8
        _entry("!", 0, None, top=[]),  # bytes null (OpenAI sends it for some tokens), a logprob of 0
    ]
    second = [_entry("No", -0.7, top=[])]
    raw = _completion(
        [{"role": "assistant", "content": "Café ☕!"}, {"role": "assistant", "content": "No"}],
        [{"content": first, "refusal": None}, {"content": second, "refusal": None}],
    )
    reply = openai_wire.parse_reply(raw, _call(n=2, logprobs=True, top_logprobs=2))
    assert reply.logprobs == (
        TokenLogprob(
            token="Caf",
            logprob=-0.1,
            top_logprobs=[TopLogprob(token="Caf", logprob=-0.1), TopLogprob(token="Bar", logprob=-2.5)],
        ),
        TokenLogprob(
            token="\\xc3",
            logprob=-0.2,
            bytes=[195],
            top_logprobs=[TopLogprob(token="\\xc3", logprob=-0.2, bytes=[195])],
        ),
        TokenLogprob(token="\\xa9", logprob=-0.3, bytes=[169]),
        TokenLogprob(token=" ☕", logprob=-1.5, top_logprobs=[TopLogprob(token=" ☕", logprob=-1.5)]),
        TokenLogprob(token="!", logprob=0.0),
    )
    assert b"".join(bytes(t.utf8()) for t in reply.logprobs).decode() == "Café ☕!"
    assert [c.logprobs for c in reply.other_choices] == [[TokenLogprob(token="No", logprob=-0.7)]]
    # a dump leaves `bytes` out where it is None (the events stay small)
    assert reply.logprobs[0].model_dump(exclude_none=True) == {
        "token": "Caf",
        "logprob": -0.1,
        "top_logprobs": [{"token": "Caf", "logprob": -0.1}, {"token": "Bar", "logprob": -2.5}],
    }


def test_openai_logprobs_not_asked_for_are_none_and_asked_for_but_absent_empty() -> None:
    tokens = [{"content": [_entry("Hi", -0.1, top=[])], "refusal": None}]
    raw = _completion([{"role": "assistant", "content": "Hi"}], tokens)
    assert openai_wire.parse_reply(raw, _call()).logprobs is None
    assert openai_wire.parse_reply(raw, _call(logprobs=True)).logprobs == (
        TokenLogprob(token="Hi", logprob=-0.1),
    )
    for absent in (None, {"content": None, "refusal": None}):  # an answer of tool calls has none
        raw = _completion([{"role": "assistant", "content": "Hi"}], [absent])
        reply = openai_wire.parse_reply(raw, _call(logprobs=True))
        assert reply.logprobs == ()


MALFORMED_OPENAI = [
    "not an object",
    {"content": "Hi"},
    {"content": ["Hi"]},
    {"content": [{"token": "Hi"}]},
    {"content": [{"token": "Hi", "logprob": None}]},
    {"content": [{"token": "Hi", "logprob": "-0.1"}]},
    {"content": [{"token": "Hi", "logprob": True}]},
    {"content": [{"logprob": -0.1}]},
    {"content": [{"token": "Hi", "logprob": -0.1, "bytes": "Hi"}]},
    {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 300]}]},
    {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": {"Hi": -0.1}}]},
    {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi"}]}]},
]


@pytest.mark.parametrize("logprobs", MALFORMED_OPENAI)
def test_malformed_openai_logprobs_are_a_bad_response(logprobs: Any) -> None:
    raw = _completion([{"role": "assistant", "content": "Hi"}], [logprobs])
    with pytest.raises(ProviderError) as err:
        openai_wire.parse_reply(raw, _call(logprobs=True))
    assert err.value.kind == "bad_response" and err.value.retryable
    openai_wire.parse_reply(raw, _call())  # not asked for: not read


def _chunk(content: str | None, entries: list[Any] | None, finish: str | None = None) -> dict[str, Any]:
    logprobs = None if entries is None else {"content": entries, "refusal": None}
    delta = {} if content is None else {"content": content}
    return {
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }


async def test_an_openai_stream_puts_each_chunks_tokens_on_its_delta_and_all_on_the_reply() -> None:
    stream = _sse(
        {
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None}],
        },
        _chunk("Hel", [_entry("Hel", -0.5, top=[_entry("Hel", -0.5)])]),
        _chunk("lo!", [_entry("lo", -0.25, top=[]), _entry("!", -1.0, top=[])]),
        _chunk(None, [_entry("\\xe2", -2.0, [226], top=[])]),  # tokens of no text: with the next text
        _chunk("\u2026", [_entry("\\x80\\xa6", -0.1, [128, 166], top=[])]),
        _chunk(None, None, "stop"),
        b"[DONE]",
    )
    sent: list[dict[str, Any]] = []
    parts = await _streamed(_openai(stream, sent), _call(logprobs=True, top_logprobs=1))
    assert sent[0]["logprobs"] is True and sent[0]["top_logprobs"] == 1
    deltas = _texts(parts)
    assert [d.text for d in deltas] == ["Hel", "lo!", "\u2026"]
    assert [[t.token for t in d.logprobs] for d in deltas] == [["Hel"], ["lo", "!"], ["\\xe2", "\\x80\\xa6"]]
    assert deltas[0].logprobs[0].top_logprobs == [TopLogprob(token="Hel", logprob=-0.5)]
    assert deltas[2].logprobs[1].bytes == [128, 166]
    final = _final(parts)
    assert final.logprobs == tuple(t for d in deltas for t in d.logprobs)
    assert b"".join(bytes(t.utf8()) for t in final.logprobs).decode() == final.content == "Hello!\u2026"


async def test_an_openai_stream_not_asked_for_logprobs_has_none() -> None:
    stream = _sse(_chunk("Hi", [_entry("Hi", -0.5, top=[])]), _chunk(None, None, "stop"), b"[DONE]")
    sent: list[dict[str, Any]] = []
    parts = await _streamed(_openai(stream, sent), _call())
    assert "logprobs" not in sent[0]
    assert [d.logprobs for d in _texts(parts)] == [()] and _final(parts).logprobs is None
    asked = await _streamed(
        _openai(_sse(_chunk("Hi", None), _chunk(None, None, "stop"), b"[DONE]")), _call(logprobs=True)
    )
    assert [d.logprobs for d in _texts(asked)] == [()] and _final(asked).logprobs == ()


async def test_a_malformed_openai_stream_chunk_is_a_bad_response() -> None:
    stream = _sse(_chunk("Hi", [{"token": "Hi", "logprob": None}]), _chunk(None, None, "stop"), b"[DONE]")
    with pytest.raises(ProviderError) as err:
        await _streamed(_openai(stream), _call(logprobs=True))
    assert err.value.kind == "bad_response"


async def test_an_openai_streams_tokens_after_its_last_text_go_out_before_the_reply() -> None:
    """Tokens of no text of their own at the end of a stream (a character cut at the end, a finishing
    chunk that carries one) reach the stream's client too, not only the reply."""
    stream = _sse(
        _chunk("Hi", [_entry("Hi", -0.5, top=[])]),
        _chunk(None, [_entry("\\xe2", -2.0, [226], top=[])], "length"),
        b"[DONE]",
    )
    parts = await _streamed(_openai(stream), _call(logprobs=True))
    deltas = _texts(parts)
    assert [d.text for d in deltas] == ["Hi", ""]
    assert [[t.token for t in d.logprobs] for d in deltas] == [["Hi"], ["\\xe2"]]
    assert _final(parts).logprobs == tuple(t for d in deltas for t in d.logprobs)


# --- OpenAI's Responses API ---


def test_the_responses_api_is_asked_for_the_output_texts_logprobs_at_effort_none() -> None:
    rules = rules_for("gpt-6-sol")
    assert rules is not None
    none = Reasoning(effort="none")
    body = openai_responses.responses_body(
        _call("gpt-6-sol", tools=(WEATHER,), reasoning=none, logprobs=True), stream=False, rules=rules
    )
    assert body["include"] == ["reasoning.encrypted_content", "message.output_text.logprobs"]
    assert body["top_logprobs"] == 0 and body["reasoning"] == {"effort": "none"}
    body = openai_responses.responses_body(
        _call("gpt-6-sol", tools=(WEATHER,), logprobs=True, top_logprobs=5), stream=True, rules=rules
    )
    assert body["top_logprobs"] == 5 and body["reasoning"] == {"effort": "none"}  # said, not the default
    body = openai_responses.responses_body(
        _call("gpt-6-sol", tools=(WEATHER,), reasoning=none), stream=False, rules=rules
    )
    assert body["include"] == ["reasoning.encrypted_content"] and "top_logprobs" not in body
    assert openai_responses.INCLUDE == ["reasoning.encrypted_content"]  # the module's list is not changed
    sol = rules_for("gpt-6.1-sol")  # takes tools only here, and never at effort none
    assert sol is not None
    with pytest.raises(ProviderError) as refused:
        openai_responses.responses_body(
            _call("gpt-6.1-sol", tools=(WEATHER,), logprobs=True), stream=False, rules=sol
        )
    assert refused.value.kind == "bad_request" and not refused.value.sent


def _response(parts: list[dict[str, Any]]) -> dict[str, Any]:
    message = {"type": "message", "id": "msg_1", "role": "assistant", "content": parts}
    return {"status": "completed", "model": "gpt-6-sol", "output": [message], "usage": None}


def test_a_responses_output_texts_logprobs_are_the_replys() -> None:
    parts = [
        {
            "type": "output_text",
            "text": "Hi",
            "annotations": [],
            "logprobs": [_entry("Hi", -0.2, top=[_entry("Hi", -0.2), _entry("Yo", -1.9)])],
        },
        {"type": "output_text", "text": "!", "annotations": [], "logprobs": [_entry("!", -0.4, top=[])]},
    ]
    raw = orjson.dumps(_response(parts))
    reply = openai_responses.parse_response(raw, _call(logprobs=True))
    assert reply.content == "Hi!"
    assert reply.logprobs == (
        TokenLogprob(
            token="Hi",
            logprob=-0.2,
            top_logprobs=[TopLogprob(token="Hi", logprob=-0.2), TopLogprob(token="Yo", logprob=-1.9)],
        ),
        TokenLogprob(token="!", logprob=-0.4),
    )
    assert openai_responses.parse_response(raw, _call()).logprobs is None
    bare = orjson.dumps(_response([{"type": "output_text", "text": "Hi", "annotations": []}]))
    assert openai_responses.parse_response(bare, _call(logprobs=True)).logprobs == ()
    bad = orjson.dumps(_response([{"type": "output_text", "text": "Hi", "logprobs": [{"token": "Hi"}]}]))
    with pytest.raises(ProviderError) as err:
        openai_responses.parse_response(bad, _call(logprobs=True))
    assert err.value.kind == "bad_response"


async def _response_parts(events: list[dict[str, Any]], call: ProviderCall) -> list[StreamPart]:
    async def body() -> AsyncIterator[bytes]:
        for e in events:
            yield f"event: {e['type']}\n".encode() + _sse(e)

    response = httpx.Response(200, content=body())
    return [p async for p in openai_responses.response_parts(response, call)]


async def test_a_responses_streams_text_deltas_carry_their_tokens() -> None:
    whole = _response([{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}])
    events = [
        {"type": "response.output_text.delta", "delta": "Hi", "logprobs": [_entry("Hi", -0.2, top=[])]},
        {"type": "response.output_text.delta", "delta": "!", "logprobs": [_entry("!", -0.4, top=[])]},
        {"type": "response.completed", "response": whole},
    ]
    parts = await _response_parts(events, _call(logprobs=True))
    assert [(d.text, [t.token for t in d.logprobs]) for d in _texts(parts)] == [("Hi", ["Hi"]), ("!", ["!"])]
    assert [t.token for t in _final(parts).logprobs or ()] == ["Hi", "!"]
    parts = await _response_parts(events, _call())
    assert [d.logprobs for d in _texts(parts)] == [(), ()] and _final(parts).logprobs is None
    events[1]["logprobs"] = "!"
    with pytest.raises(ProviderError) as err:
        await _response_parts(events, _call(logprobs=True))
    assert err.value.kind == "bad_response"


# --- Gemini ---


def test_gemini_is_asked_for_logprobs_and_alternatives_only_when_the_call_asks() -> None:
    config = gemini_wire.request_body(_call("gemini-3-flash", logprobs=True, top_logprobs=4))[
        "generationConfig"
    ]
    assert config["responseLogprobs"] is True and config["logprobs"] == 4
    for top in (None, 0):  # Gemini's `logprobs` counts alternatives from 1: none is left out
        config = gemini_wire.request_body(_call("gemini-3-flash", logprobs=True, top_logprobs=top))[
            "generationConfig"
        ]
        assert config == {"responseLogprobs": True}
    assert "generationConfig" not in gemini_wire.request_body(_call("gemini-3-flash"))


def _step(token: str, logprob: float | None) -> dict[str, Any]:
    step: dict[str, Any] = {"token": token, "tokenId": 7}
    return step if logprob is None else {**step, "logProbability": logprob}


def _candidate(index: int, text: str, result: Any = None) -> dict[str, Any]:
    candidate = {
        "index": index,
        "content": {"role": "model", "parts": [{"text": text}]},
        "finishReason": "STOP",
    }
    return candidate if result is None else {**candidate, "logprobsResult": result, "avgLogprobs": -0.5}


def test_each_gemini_candidates_steps_are_its_tokens_and_their_alternatives() -> None:
    first = {
        "chosenCandidates": [_step("Hel", -0.5), _step("lo", None)],  # 0 is left out of Google's JSON
        "topCandidates": [
            {"candidates": [_step("Hel", -0.5), _step("Hi", -1.5)]},
            {"candidates": [_step("lo", None), _step("p", -7.25)]},
        ],
    }
    second = {"chosenCandidates": [_step("Hey", -0.75)]}  # no alternatives asked for
    data = {"candidates": [_candidate(1, "Hey", second), _candidate(0, "Hello", first)], "modelVersion": "g"}
    reply = gemini_wire.parse_reply(orjson.dumps(data), _call(n=2, logprobs=True, top_logprobs=2))
    assert reply.logprobs == (
        TokenLogprob(
            token="Hel",
            logprob=-0.5,
            top_logprobs=[TopLogprob(token="Hel", logprob=-0.5), TopLogprob(token="Hi", logprob=-1.5)],
        ),
        TokenLogprob(
            token="lo",
            logprob=0.0,
            top_logprobs=[TopLogprob(token="lo", logprob=0.0), TopLogprob(token="p", logprob=-7.25)],
        ),
    )
    assert [c.logprobs for c in reply.other_choices] == [[TokenLogprob(token="Hey", logprob=-0.75)]]
    assert gemini_wire.parse_reply(orjson.dumps(data), _call(n=2)).logprobs is None
    bare = {"candidates": [_candidate(0, "Hello")]}
    assert gemini_wire.parse_reply(orjson.dumps(bare), _call(logprobs=True)).logprobs == ()


MALFORMED_GEMINI = [
    "not an object",
    {"chosenCandidates": {"token": "Hello"}},
    {"chosenCandidates": ["Hello"]},
    {"chosenCandidates": [{"token": "Hello", "logProbability": "NaN"}]},  # proto3 JSON's NaN
    {"chosenCandidates": [{"token": "Hello", "logProbability": "-Infinity"}]},
    {"chosenCandidates": [{"token": 5, "logProbability": -0.5}]},
    {"chosenCandidates": [_step("Hello", -0.5)], "topCandidates": [{"candidates": "Hello"}]},
    {"chosenCandidates": [_step("Hello", -0.5)], "topCandidates": ["Hello"]},
    {"chosenCandidates": [_step("Hello", -0.5)], "topCandidates": [{"candidates": [{"logProbability": []}]}]},
]


@pytest.mark.parametrize("result", MALFORMED_GEMINI)
def test_malformed_gemini_logprobs_are_a_bad_response(result: Any) -> None:
    raw = orjson.dumps({"candidates": [_candidate(0, "Hello", result)]})
    with pytest.raises(ProviderError) as err:
        gemini_wire.parse_reply(raw, _call(logprobs=True))
    assert err.value.kind == "bad_response"
    gemini_wire.parse_reply(raw, _call())  # not asked for: not read


async def test_a_gemini_streams_chunks_carry_their_steps() -> None:
    def chunk(text: str, steps: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": [{"text": text}]}}
        top = [{"candidates": [step]} for step in steps]
        candidate["logprobsResult"] = {"chosenCandidates": steps, "topCandidates": top}
        return {"candidates": [candidate | ({"finishReason": finish} if finish else {})], "modelVersion": "g"}

    stream = _sse(
        chunk("Hel", [_step("Hel", -0.5)]), chunk("lo!", [_step("lo", -0.25), _step("!", -1.0)], "STOP")
    )
    parts = await _streamed(_gemini(stream), _call(logprobs=True, top_logprobs=1))
    deltas = _texts(parts)
    assert [(d.text, [t.token for t in d.logprobs]) for d in deltas] == [
        ("Hel", ["Hel"]),
        ("lo!", ["lo", "!"]),
    ]
    assert deltas[1].logprobs[1] == TokenLogprob(
        token="!", logprob=-1.0, top_logprobs=[TopLogprob(token="!", logprob=-1.0)]
    )
    assert _final(parts).logprobs == (*deltas[0].logprobs, *deltas[1].logprobs)
    parts = await _streamed(_gemini(stream), _call())
    assert [d.logprobs for d in _texts(parts)] == [(), ()] and _final(parts).logprobs is None
    bad = _sse(chunk("Hel", [{"token": "Hel", "logProbability": "NaN"}], "STOP"))
    with pytest.raises(ProviderError) as err:
        await _streamed(_gemini(bad), _call(logprobs=True))
    assert err.value.kind == "bad_response"
