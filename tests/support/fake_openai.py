"""A local server speaking OpenAI's chat-completions protocol, for tests: real JSON and SSE formats, real
error bodies and status codes. The requested model name picks the behaviour, so one server serves every
scenario, also to an executor running in another process:

    any other name      an answer: "Hello! You said: <last user message>"
    error-<status>      that status with OpenAI's error body (400, 401, 404, 429 + Retry-After, 500, 503, 529)
    error-quota         429 insufficient_quota: the account is out of credit (no Retry-After)
    error-context       400 context_length_exceeded
    error-policy        400 content_policy_violation
    flaky-<n>           503 for the first n calls of that model, then an answer
    limited-<n>         429 + Retry-After for the first n calls of that model, then an answer
    slow-<seconds>      waits that long before answering (a stream: before its response's status)
    think-<seconds>     as a reasoning model: answers whole after that long; a stream's response begins
                        at once, its first chunk after that long
    pause-<seconds>     a stream silent that long after its first word, then the rest at once
    drip-<seconds>      a stream whose words come that far apart (`Scenarios.finished` counts the
                        streams sent to their end, so a test can tell a stream cut by its client)
    break               a stream (or body) that drops the connection after some text
    stream-error        a stream that sends text, then an error object
    garbage             200 with a body (or stream chunk) that is not JSON
    bomb-<MiB>          the answer and that many MiB of spaces, gzipped (`fake_scenarios.gzip_bomb`)
    long-<words>        an answer of that many words (each a token), cut at `max_completion_tokens` or
                        `max_tokens` when sent (finish_reason `length`), whole or streamed
    longline-<MiB>      a stream whose first event's line is padded with that many MiB of spaces
    echo-key            400 whose message quotes the request's Authorization header (a proxy's echo)
    context-in-200      error-context's error object, answered 200
    html-200            a proxy's HTML page, answered 200 (`fake_scenarios.proxy_page`)
    whole-stream        a stream asked for, answered whole (JSON), as a server that does not stream
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

The chat completions' answers are written in `fake_openai_chat.py`, what every fake server shares in
`fake_scenarios.py`; the names they define are importable from here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import fake_embeddings
from tests.support import fake_openai_responses as responses
from tests.support.fake_openai_chat import (
    BREAK,
    END,
    PARALLEL,
    PARALLEL_CALLS,
    REASONED,
    REASONING,
    REFUSAL,
    STREAM_ERROR,
    ChatAnswers,
    asked_logprobs,
    drip_seconds,
    logprob_entries,
    logprobs_refusal,
    reasoning_tokens,
    usage_body,
)
from tests.support.fake_openai_refusals import name_refusal, refusal
from tests.support.fake_scenarios import (
    RETRY_AFTER_S,
    ConnectionDropped,
    Recorded,
    Scenarios,
    answer_text,
    bomb_mib,
    first_line_padded,
    flaky_failures,
    gzip_bomb,
    limited_calls,
    long_answer,
    long_line_mib,
    long_words,
    proxy_page,
    slow_seconds,
    sse,
    think_seconds,
    words,
)

# what other modules and tests import from here, wherever it is defined now
__all__ = [
    "BREAK",
    "END",
    "ERRORS",
    "PARALLEL",
    "PARALLEL_CALLS",
    "REASONED",
    "REASONING",
    "REFUSAL",
    "RETRY_AFTER_S",
    "STREAM_ERROR",
    "ChatAnswers",
    "ConnectionDropped",
    "FakeOpenAI",
    "Recorded",
    "Scenarios",
    "answer_text",
    "asked_logprobs",
    "drip_seconds",
    "error_response",
    "flaky_failures",
    "limited_calls",
    "logprob_entries",
    "logprobs_refusal",
    "reasoning_tokens",
    "slow_seconds",
    "sse",
    "think_seconds",
    "usage_body",
    "words",
]

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
    "quota": (
        429,
        {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        },
    ),
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


def error_response(name: str) -> Response:
    status, body = ERRORS[name]
    headers = {"retry-after": str(RETRY_AFTER_S)} if name == "429" else {}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class FakeOpenAI(ChatAnswers):
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
        if model == "echo-key":  # a proxy that quotes the request's headers back
            quoted = {
                "message": f"bad header {request.headers['authorization']}",
                "type": "invalid_request_error",
            }
            return JSONResponse({"error": quoted}, status_code=400)
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        if model == "context-in-200":  # the error object, with a 200 (a proxy's way)
            return JSONResponse({"error": ERRORS["context"][1]})
        if model == "html-200":
            return proxy_page()
        refused = refusal(body) or logprobs_refusal(body) or name_refusal(body)
        if refused is not None:
            return JSONResponse({"error": refused}, status_code=400)
        if n <= flaky_failures(model):
            return error_response("503")
        if n <= limited_calls(model):
            return error_response("429")
        await asyncio.sleep(slow_seconds(model) + (0.0 if body.get("stream") else think_seconds(model)))
        text = answer_text(body)
        if long_words(model):
            text, _ = long_answer(model, body.get("max_completion_tokens") or body.get("max_tokens"))
        if model == "tool-call" and body.get("tools"):
            return self._tool_call(body)
        if model == "refusal":
            return self._refusal(body)
        if body.get("stream") and model != "whole-stream":
            events = self._stream(body, model, text)
            if long_line_mib(model):
                events = first_line_padded(events, long_line_mib(model))
            return StreamingResponse(events, media_type="text/event-stream")
        if model == "garbage":
            return Response(b"<html>502 Bad Gateway</html>{", media_type="application/json")
        answers = int(body.get("n") or 1)
        reasoning = reasoning_tokens(body, answers)
        completion = self._completion(
            model, text, answers=answers, logprobs=asked_logprobs(body), reasoning=reasoning
        )
        if model == "break":
            return StreamingResponse(_dropping(orjson.dumps(completion)), media_type="application/json")
        if bomb_mib(model):
            return gzip_bomb(completion, bomb_mib(model))
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


async def _dropping(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise ConnectionDropped
