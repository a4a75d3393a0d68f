"""A local server speaking OpenAI's chat-completions protocol, for tests: real JSON and SSE formats, real
error bodies and status codes. The requested model name picks the behaviour, so one server serves every
scenario, also to an executor running in another process:

    any other name      an answer: "Hello! You said: <last user message>"
    error-<status>      that status with OpenAI's error body (400, 401, 404, 429 + Retry-After, 500, 503, 529)
    error-context       400 context_length_exceeded
    error-policy        400 content_policy_violation
    flaky-<n>           503 for the first n calls of that model, then an answer
    limited-<n>         429 + Retry-After for the first n calls of that model, then an answer
    slow-<seconds>      waits that long before answering
    drip-<seconds>      a stream whose words come that far apart (`Scenarios.finished` counts the
                        streams sent to their end, so a test can tell a stream cut by its client)
    break               a stream (or body) that drops the connection after some text
    stream-error        a stream that sends text, then an error object
    garbage             200 with a body (or stream chunk) that is not JSON
    tool-call           with `tools`: a call of the first tool, arguments {"city": "Paris"} (streamed);
                        when the last user text is PARALLEL, three calls of it streamed as compatible
                        servers may: interleaved by index, the first's name in two pieces, the last
                        with no arguments at all (`PARALLEL_CALLS`: the calls whole)
    cached              an answer whose usage says 1,536 of its 2,048 prompt tokens were cache hits
    reasoner            as DeepSeek's reasoner and vLLM's reasoning parsers answer: `reasoning_content`
                        beside the answer (streamed first, in its own deltas), its words counted in
                        `completion_tokens` and as `completion_tokens_details.reasoning_tokens`
    bad-logprobs        asked for logprobs: its first token's entry has `"logprob": null`
    refusal             a refusal, as structured outputs answer one: `content: null` and `refusal` its
                        words (streamed: the role with empty content, then `delta.refusal` pieces)
    o3, gpt-5, gpt-5.1 ... gpt-6.1-sol (and dated snapshots): OpenAI's reasoning models, refusing with
                        OpenAI's 400 what those refuse (`fake_openai_refusals.py`: max_tokens, an effort
                        they lack, sampling fields, function tools at an effort other than none), and
                        otherwise answering as any other name, with REASONED hidden reasoning tokens an
                        answer in its usage unless the effort in force is none (as OpenAI shows none)

`/v1/responses` speaks OpenAI's Responses API (`fake_openai_responses.py`) with the same key check and
the `error-*`, `flaky-*` and `tool-call` names (`break` and `stream-error` there are the last user text).

`/v1/embeddings` speaks OpenAI's embeddings API (`fake_embeddings.py`: a vector per text, drawn from its
hash; rows listed last first; base64 or floats as asked; OpenAI's 400s) with the same key check and the
`error-*`, `flaky-*`, `limited-*`, `slow-*`, `garbage` and `break` names, and:

    no-usage            a reply without `usage` (as some compatible servers answer)
    floats-only         floats, even when base64 was asked for (a server that ignores the encoding)
    short               one row fewer than the inputs

A request without the right `Authorization: Bearer <key>` gets 401, as the real API answers.

With `n` > 1 the i-th answer (from 2) says the first's text and "(answer i)"; a stream sends them as
OpenAI does: one choice a chunk, by its `index`, interleaved (a piece of each answer in turn), each
answer's first chunk with its role and its last with its finish reason, the usage (of all) last.

With `logprobs: true` each choice carries `logprobs.content`: its text's tokens (`fake_logprobs.py`),
each with `top_logprobs` alternatives (none without the field); a stream then sends one token a chunk,
with its entry. Without it, `logprobs` is null; `top_logprobs` without it, or above 20, is OpenAI's 400.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import fake_embeddings, fake_logprobs
from tests.support import fake_openai_responses as responses
from tests.support.fake_openai_refusals import effort_in_force, refusal

RETRY_AFTER_S = 1

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "400": (
        400,
        {
            "message": "We could not parse the JSON body of your request.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
    ),
    "401": (
        401,
        {
            "message": "Incorrect API key provided: sk-wr*****ng. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    "404": (
        404,
        {
            "message": "The model `error-404` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        },
    ),
    "429": (
        429,
        {
            "message": "Rate limit reached for requests. Please try again in 1s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "500": (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    "503": (
        503,
        {
            "message": "The engine is currently overloaded, please try again later",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    "529": (529, {"message": "Overloaded", "type": "server_error", "param": None, "code": None}),
    "context": (
        400,
        {
            "message": "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130412 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    "policy": (
        400,
        {
            "message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        },
    ),
}


REASONING = "The user greets me. A short answer will do."
REASONED = 64  # an OpenAI reasoning model's hidden reasoning tokens, an answer
REFUSAL = "I'm sorry, I can't help with that request."
BREAK, END = object(), object()  # where a stream drops its connection, where it ends without [DONE]
STREAM_ERROR = {
    "message": "The server had an error while processing your request.",
    "type": "server_error",
    "param": None,
    "code": None,
}


def error_response(name: str) -> Response:
    status, body = ERRORS[name]
    headers = {"retry-after": str(RETRY_AFTER_S)} if status == 429 else {}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


PARALLEL = "Three calls, streamed as compatible servers may."
# the calls of `tool-call` asked PARALLEL (id, arguments); the last streams no arguments, `{}` whole
PARALLEL_CALLS = (
    ("call_par_1", '{"city": "Paris"}'),
    ("call_par_2", '{"city": "Oslo"}'),
    ("call_par_3", "{}"),
)


def answer_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = users[-1].get("content", "") if users else ""
    if isinstance(last, list):
        last = " ".join(p.get("text", "") for p in last if p.get("type") == "text")
    return f"Hello! You said: {last}"


def words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]]


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + payload + b"\n\n"


class ConnectionDropped(Exception):
    """Raised inside a streamed body: uvicorn then closes the connection without finishing the body."""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Scenarios:
    """Request log and per-model call counts, shared by the fake servers."""

    requests: list[Recorded] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)  # streams sent to their end, by model

    async def record(self, request: Request) -> tuple[dict[str, Any], str, int]:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        self.requests.append(Recorded(request.url.path, dict(request.headers), body))
        self.calls[model] += 1
        return body, model, self.calls[model]


def flaky_failures(model: str) -> int:
    return int(model.removeprefix("flaky-")) if model.startswith("flaky-") else 0


def limited_calls(model: str) -> int:
    return int(model.removeprefix("limited-")) if model.startswith("limited-") else 0


def slow_seconds(model: str) -> float:
    return float(model.removeprefix("slow-")) if model.startswith("slow-") else 0.0


def usage_body(model: str, completion: int, reasoning: int = 0) -> dict[str, Any]:
    """OpenAI's usage object, `completion` the answers' tokens and `reasoning` the reasoning's, counted
    in `completion_tokens` too; `cached` reads three quarters of a long prompt from the prompt cache."""
    prompt, cached = (2048, 1536) if model == "cached" else (11, 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def reasoning_tokens(body: dict[str, Any], answers: int) -> int:
    """The reasoning tokens of `answers` answers: `reasoner`'s words, or an OpenAI reasoning model's
    hidden REASONED at any effort but none."""
    if body.get("model") == "reasoner":
        return answers * len(words(REASONING))
    effort = effort_in_force(body)
    return answers * REASONED if effort not in (None, "none") else 0


def drip_seconds(model: str) -> float:
    return float(model.removeprefix("drip-")) if model.startswith("drip-") else 0.0


class FakeOpenAI:
    def __init__(self, *, api_key: str = "sk-test-fake-openai-key") -> None:
        self.api_key = api_key
        self.scenarios = Scenarios()
        self.reasoning = responses.Reasoning()  # encrypted reasoning given out by /v1/responses
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )

    @property
    def requests(self) -> list[Recorded]:
        return self.scenarios.requests

    async def chat(self, request: Request) -> Response:
        body, model, n = await self.scenarios.record(request)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_response("401")
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        refused = refusal(body) or logprobs_refusal(body)
        if refused is not None:
            return JSONResponse({"error": refused}, status_code=400)
        if n <= flaky_failures(model):
            return error_response("503")
        if n <= limited_calls(model):
            return error_response("429")
        await asyncio.sleep(slow_seconds(model))
        text = answer_text(body)
        if model == "tool-call" and body.get("tools"):
            return self._tool_call(body)
        if model == "refusal":
            return self._refusal(body)
        if body.get("stream"):
            return StreamingResponse(self._stream(body, model, text), media_type="text/event-stream")
        if model == "garbage":
            return Response(b"<html>502 Bad Gateway</html>{", media_type="application/json")
        answers = int(body.get("n") or 1)
        reasoning = reasoning_tokens(body, answers)
        completion = self._completion(
            model, text, answers=answers, logprobs=asked_logprobs(body), reasoning=reasoning
        )
        if model == "break":
            return StreamingResponse(_dropping(orjson.dumps(completion)), media_type="application/json")
        return JSONResponse(completion)

    async def responses(self, request: Request) -> Response:
        """OpenAI's Responses API (`fake_openai_responses.py`), with the same key and error scenarios."""
        body, model, n = await self.scenarios.record(request)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_response("401")
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        refused = responses.refusal(body, self.reasoning)
        if refused is not None:
            return JSONResponse({"error": refused}, status_code=400)
        if n <= flaky_failures(model):
            return error_response("503")
        return responses.answer(body, model, self.reasoning)

    async def embeddings(self, request: Request) -> Response:
        """OpenAI's embeddings API (`fake_embeddings.py`), with the same key and failure scenarios."""
        body, model, n = await self.scenarios.record(request)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_response("401")
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        refused = fake_embeddings.openai_refusal(body)
        if refused is not None:
            return JSONResponse({"error": refused}, status_code=400)
        if n <= flaky_failures(model):
            return error_response("503")
        if n <= limited_calls(model):
            return error_response("429")
        await asyncio.sleep(slow_seconds(model))
        if model == "garbage":
            return Response(b"<html>502 Bad Gateway</html>{", media_type="application/json")
        answer = fake_embeddings.openai_answer(
            body, floats_only=model == "floats-only", usage=model != "no-usage"
        )
        if model == "short":
            answer["data"] = [row for row in answer["data"] if row["index"] != 0]
        if model == "break":
            return StreamingResponse(_dropping(orjson.dumps(answer)), media_type="application/json")
        return JSONResponse(answer)

    def _completion(
        self, model: str, text: str, *, answers: int = 1, logprobs: int | None = None, reasoning: int = 0
    ) -> dict[str, Any]:
        """`answers` (`n`): the first says `text`, the i-th (from 2) `text` and "(answer i)"; listed last
        first, as nothing in OpenAI's API promises their order but their `index`. `logprobs`: the
        alternatives asked for per token, when the tokens' log probabilities were; `reasoning`: the
        answers' reasoning tokens."""
        choices = []
        for index in reversed(range(answers)):
            said = text if index == 0 else f"{text} (answer {index + 1})"
            message: dict[str, Any] = {"role": "assistant", "content": said, "refusal": None}
            if model == "reasoner":
                message["reasoning_content"] = REASONING
            entries = None
            if logprobs is not None:
                entries = {
                    "content": logprob_entries(model, fake_logprobs.tokens(said), logprobs),
                    "refusal": None,
                }
            choices.append({"index": index, "message": message, "logprobs": entries, "finish_reason": "stop"})
        spoken = sum(len(words(c["message"]["content"])) for c in choices)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage_body(model, spoken, reasoning),
            "system_fingerprint": "fp_fake",
        }

    def _tool_call(self, body: dict[str, Any]) -> Response:
        name = ((body.get("tools") or [{}])[0].get("function") or {}).get("name", "unknown")
        if answer_text(body).endswith(PARALLEL):
            return self._parallel_calls(body, name)
        call = {"id": "call_fake_1", "type": "function", "function": {"name": name, "arguments": ""}}
        arguments = ['{"city"', ': "Paris"}']
        if not body.get("stream"):
            completion = self._completion("tool-call", "")
            call["function"]["arguments"] = "".join(arguments)
            message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
            completion["choices"][0].update(message=message, finish_reason="tool_calls")
            return JSONResponse(completion)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "tool-call"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        async def parts() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]})
            for piece in arguments:
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            yield chunk({}, "tool_calls")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(parts(), media_type="text/event-stream")

    def _parallel_calls(self, body: dict[str, Any], name: str) -> Response:
        calls = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, arguments in PARALLEL_CALLS
        ]
        if not body.get("stream"):
            completion = self._completion("tool-call", "")
            message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
            completion["choices"][0].update(message=message, finish_reason="tool_calls")
            return JSONResponse(completion)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "tool-call"}
        (first, _), (second, _), (third, _) = PARALLEL_CALLS

        def piece(index: int, **fields: Any) -> bytes:
            call = {"index": index, **fields}
            choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
            return sse({**base, "choices": [choice]})

        def more(index: int, arguments: str) -> bytes:
            return piece(index, function={"arguments": arguments})

        async def parts() -> AsyncIterator[bytes]:
            yield piece(0, id=first, type="function", function={"name": name[:4]})
            yield piece(0, function={"name": name[4:], "arguments": ""})
            yield piece(1, id=second, type="function", function={"name": name, "arguments": '{"ci'})
            yield more(0, '{"city": "Pa')
            yield more(1, 'ty": "Oslo"}')
            yield more(0, 'ris"}')
            yield piece(2, id=third, type="function", function={"name": name, "arguments": ""})
            yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(parts(), media_type="text/event-stream")

    def _refusal(self, body: dict[str, Any]) -> Response:
        if not body.get("stream"):
            completion = self._completion("refusal", "")
            completion["choices"][0]["message"].update(content=None, refusal=REFUSAL)
            return JSONResponse(completion)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "refusal"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        async def parts() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            for piece in words(REFUSAL):
                yield chunk({"refusal": piece})
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield sse({**base, "choices": [], "usage": usage_body("refusal", len(words(REFUSAL)))})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(parts(), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any], model: str, text: str) -> AsyncIterator[bytes]:
        """As OpenAI streams: each chunk holds one choice, by its `index`; with `n` > 1 the answers come
        interleaved (a piece of each in turn, as they are generated), each starting with its role and
        ending with its finish reason; the usage (all the answers') last."""
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        top = asked_logprobs(body)
        answers = int(body.get("n") or 1)
        said = [text if i == 0 else f"{text} (answer {i + 1})" for i in range(answers)]
        streams = [self._choice_chunks(base, model, i, s, top) for i, s in enumerate(said)]
        for turn in itertools.zip_longest(*streams):
            for item in turn:
                if item is None:
                    continue
                if item is BREAK:
                    raise ConnectionDropped
                if item is END:
                    return
                data, worded = item
                yield data
                if worded:
                    await asyncio.sleep(drip_seconds(model))
        if (body.get("stream_options") or {}).get("include_usage"):
            spoken = sum(len(words(s)) for s in said)
            yield sse(
                {**base, "choices": [], "usage": usage_body(model, spoken, reasoning_tokens(body, answers))}
            )
        yield b"data: [DONE]\n\n"
        self.scenarios.finished[model] += 1

    @staticmethod
    def _choice_chunks(
        base: dict[str, Any], model: str, index: int, text: str, top: int | None
    ) -> list[tuple[bytes, bool] | object]:
        """One answer's chunks, each with whether it holds a piece of its text: its role, its reasoning
        (`reasoner`), its text (with logprobs asked for, a token a chunk, as OpenAI streams, with its
        entry; else a word a chunk), its finish reason. At the first answer's third piece `break` drops the
        connection (BREAK), `stream-error` sends an error object and ends the stream (END)."""

        def chunk(delta: dict[str, Any], finish: str | None = None, entries: Any = None) -> bytes:
            logprobs = None if entries is None else {"content": entries, "refusal": None}
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        out: list[tuple[bytes, bool] | object] = [
            (chunk({"role": "assistant", "content": "", "refusal": None}), False)
        ]
        if model == "reasoner":
            out += [(chunk({"reasoning_content": p, "content": None}), False) for p in words(REASONING)]
        if model == "garbage":
            return [*out, (sse(b"{not json"), False), END]
        pieces = words(text) if top is None else fake_logprobs.tokens(text)
        entries = [] if top is None else logprob_entries(model, pieces, top)
        for i, word in enumerate(pieces):
            if i == 2 and index == 0 and model == "break":
                return [*out, BREAK]
            if i == 2 and index == 0 and model == "stream-error":
                return [*out, (sse({"error": STREAM_ERROR}), False), END]
            out.append((chunk({"content": word}, entries=None if top is None else entries[i : i + 1]), True))
        return [*out, (chunk({}, "stop"), False)]


def asked_logprobs(body: dict[str, Any]) -> int | None:
    """The alternatives asked for per token (0 without `top_logprobs`), or None: no logprobs asked for."""
    return int(body.get("top_logprobs") or 0) if body.get("logprobs") else None


def logprobs_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's 400 for `top_logprobs` without `logprobs: true`, or out of its range."""
    top = body.get("top_logprobs")
    if top is None:
        return None
    if not body.get("logprobs"):
        return {
            "message": "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' "
            "is used.",
            "type": "invalid_request_error",
            "param": "top_logprobs",
            "code": "invalid_value",
        }
    if not isinstance(top, int) or not 0 <= top <= 20:
        return {
            "message": "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, "
            f"but got {top} instead.",
            "type": "invalid_request_error",
            "param": "top_logprobs",
            "code": "integer_above_max_value",
        }
    return None


def logprob_entries(model: str, split: list[str], top: int) -> list[dict[str, Any]]:
    """The entries of these tokens; `bad-logprobs` sends the first without its log probability."""
    entries = fake_logprobs.openai_entries(split, top)
    if model == "bad-logprobs" and entries:
        entries[0]["logprob"] = None
    return entries


async def _dropping(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise ConnectionDropped
