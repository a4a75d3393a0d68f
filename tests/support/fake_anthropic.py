"""A local server speaking Anthropic's Messages protocol, for tests: the message JSON, the SSE event
sequence (message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta, message_stop), and the real error bodies and status codes. The model name picks the
behaviour, as in `fake_openai` (error-<status>: 401, 404, 429 + Retry-After, 500, 503, 529;
error-context, error-policy, flaky-<n>, limited-<n>, slow-<seconds>, break, stream-error, garbage,
bomb-<MiB>, longline-<MiB>, echo-key, context-in-200, html-200, whole-stream; long-<words> (answered
whole: cut at `max_tokens`, stop_reason `max_tokens`);
tool-call with tools, or a name ending in `:tool-call` (`claude-opus-4-7:tool-call`: a named model's
thinking rules with this behaviour): a `tool_use` of the first tool, input {"city": "Paris"}, streamed as
`input_json_delta`s).

Requests without the `x-api-key` the server was given get 401; without `anthropic-version`, or without
`max_tokens`, 400 — as the real API answers.

Extended thinking as the API does it: `thinking` is checked (a budget of at least 1,024 tokens, below
`max_tokens`; no temperature but 1, no forced tool), the answer starts with a thinking block whose
signature is an HMAC of its text (model `redacted`: a redacted_thinking block after it), streamed as
thinking_delta and signature_delta events; thinking blocks sent back must carry a valid signature, and a
tool loop continued with thinking must send its assistant turn's thinking block first (the API's 400s).
Adaptive thinking by model name, as Claude's models take it: `claude-opus-4-6` and `claude-sonnet-4-6`
take a budget or adaptive thinking, Opus 4.7 and later, the Claude 5 models, Mythos and Fable only
adaptive thinking (a budget is a 400), other names only a budget; `output_config.effort` is checked
against the levels each takes; `display: omitted` returns a thinking block without its text. The Claude
5.5 models always think (an omitted block by default) and refuse sampling settings, a forced tool and
disabled thinking; their blocks are signed with the model's name, and a block from another model is a
400 ("bound to a different conversation") unless the request asks for it to be dropped
(`thinking.block_binding.prefix_mismatch_behavior: drop_block`, with its beta header). Structured outputs
(`output_config.format`): the answer is JSON held to the schema, whose objects must be closed.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.fake_anthropic_shapes import cache_marks, format_refusal, input_usage, sample
from tests.support.fake_scenarios import (
    RETRY_AFTER_S,
    ConnectionDropped,
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
    words,
)
from tests.support.servers import BackgroundServer

__all__ = ["BackgroundServer", "FakeAnthropic"]

ERRORS: dict[str, tuple[int, str, str]] = {
    "401": (401, "authentication_error", "invalid x-api-key"),
    "404": (404, "not_found_error", "model: error-404"),
    "429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "500": (500, "api_error", "Internal server error"),
    "503": (503, "api_error", "Service unavailable"),
    "529": (529, "overloaded_error", "Overloaded"),
    "context": (400, "invalid_request_error", "prompt is too long: 210412 tokens > 200000 maximum"),
    "policy": (400, "invalid_request_error", "Output blocked by content filtering policy"),
}


def error_body(err_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": err_type, "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def error_response(name: str) -> Response:
    status, err_type, message = ERRORS[name]
    headers = {"retry-after": str(RETRY_AFTER_S)} if status == 429 else {}
    return JSONResponse(error_body(err_type, message), status_code=status, headers=headers)


def bad_request(message: str) -> Response:
    return JSONResponse(error_body("invalid_request_error", message), status_code=400)


def stopped_at(text: str, stops: list[str] | None) -> tuple[str, str | None]:
    """As Anthropic stops: before the first of the request's stop sequences to appear, which it names
    (`stop_reason: stop_sequence`) and leaves out of the text."""
    hits = [(text.find(s), s) for s in stops or [] if s and s in text]
    if not hits:
        return text, None
    at, first = min(hits)
    return text[:at], first


class FakeAnthropic:
    def __init__(self, *, api_key: str = "sk-ant-test-fake-anthropic-key") -> None:
        self.api_key = api_key
        self.scenarios = Scenarios()
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    @property
    def requests(self) -> list[Any]:
        return self.scenarios.requests

    async def messages(self, request: Request) -> Response:
        body, model, n = await self.scenarios.record(request)
        if request.headers.get("x-api-key") != self.api_key:
            return error_response("401")
        if model == "echo-key":  # a proxy that quotes the request's headers back
            return bad_request(f"bad header x-api-key={request.headers['x-api-key']}")
        if not request.headers.get("anthropic-version"):
            return bad_request("anthropic-version: header is required")
        if "max_tokens" not in body:
            return bad_request("max_tokens: Field required")
        marks = cache_marks(body)
        if len(marks) > 4:
            return bad_request(
                f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}."
            )
        if any(m.get("type") != "ephemeral" for m in marks):
            return bad_request("cache_control.type: Input should be 'ephemeral'")
        body = copy.deepcopy(body)  # the record keeps the request as sent; the API may drop blocks from it
        refused = thinking_refusal(body, beta=request.headers.get("anthropic-beta", "")) or format_refusal(
            body
        )
        if refused is not None:
            return bad_request(refused)
        for i, tool in enumerate(body.get("tools") or []):
            if not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", str(tool.get("name", ""))):  # Gemini's `.`, `:`
                return bad_request(
                    f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                )
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        if model == "context-in-200":  # the error object, with a 200 (a proxy's way)
            return JSONResponse(error_body(*ERRORS["context"][1:]))
        if model == "html-200":
            return proxy_page()
        if n <= flaky_failures(model):
            return error_response("529")
        if n <= limited_calls(model):
            return error_response("429")
        await asyncio.sleep(slow_seconds(model))
        schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
        answer = orjson.dumps(sample(schema)).decode() if schema is not None else answer_text(body)
        cut = False
        if long_words(model):  # cut at max_tokens, as Anthropic cuts one (stop_reason max_tokens)
            answer, cut = long_answer(model, body["max_tokens"])
        text, hit = stopped_at(answer, body.get("stop_sequences"))
        thoughts = thinking_blocks(body, model)
        if (model == "tool-call" or model.endswith(":tool-call")) and body.get("tools"):
            return self._tool_use(body, thoughts)
        if body.get("stream") and model != "whole-stream":
            events = self._stream(model, text, hit, thoughts)
            if long_line_mib(model):
                events = first_line_padded(events, long_line_mib(model))
            return StreamingResponse(events, media_type="text/event-stream")
        if model == "garbage":
            return Response(
                b"upstream connect error or disconnect/reset before headers", media_type="application/json"
            )
        message = self._message(model, text, hit)
        if cut:
            message["stop_reason"] = "max_tokens"
        message["content"] = thoughts + message["content"]
        message["usage"]["output_tokens"] += thinking_tokens(thoughts)
        if model == "break":
            raw = orjson.dumps(message)
            return StreamingResponse(_dropping(raw), media_type="application/json")
        if bomb_mib(model):
            return gzip_bomb(message, bomb_mib(model))
        return JSONResponse(message)

    def _message(self, model: str, text: str, hit: str | None = None) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "stop_sequence" if hit else "end_turn",
            "stop_sequence": hit,
            "usage": {**input_usage(model), "output_tokens": len(words(text))},
        }

    def _tool_use(self, body: dict[str, Any], thoughts: list[dict[str, Any]]) -> Response:
        name = (body.get("tools") or [{}])[0].get("name", "unknown")
        block = {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {"city": "Paris"}}
        message = self._message(str(body.get("model")), "")
        message.update(content=[*thoughts, block], stop_reason="tool_use")
        message["usage"]["output_tokens"] += thinking_tokens(thoughts)
        if not body.get("stream"):
            return JSONResponse(message)

        async def events() -> AsyncIterator[bytes]:
            start = {**message, "content": [], "stop_reason": None}
            yield sse({"type": "message_start", "message": start}, "message_start")
            for index, thought in enumerate(thoughts):
                for event in thinking_events(index, thought):
                    yield event
            at = len(thoughts)
            empty = {**block, "input": {}}
            yield sse(
                {"type": "content_block_start", "index": at, "content_block": empty}, "content_block_start"
            )
            for piece in ('{"city"', ': "Paris"}'):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse({"type": "content_block_delta", "index": at, "delta": delta}, "content_block_delta")
            yield sse({"type": "content_block_stop", "index": at}, "content_block_stop")
            delta = {"stop_reason": "tool_use", "stop_sequence": None}
            yield sse(
                {
                    "type": "message_delta",
                    "delta": delta,
                    "usage": {"output_tokens": 7 + thinking_tokens(thoughts)},
                },
                "message_delta",
            )
            yield sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _stream(
        self, model: str, text: str, hit: str | None, thoughts: list[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        start = self._message(model, "")
        start.update(content=[], stop_reason=None, usage={**input_usage(model), "output_tokens": 1})
        yield sse({"type": "message_start", "message": start}, "message_start")
        for index, thought in enumerate(thoughts):
            for event in thinking_events(index, thought):
                yield event
        at = len(thoughts)  # the text block's index
        yield sse(
            {"type": "content_block_start", "index": at, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
        yield sse({"type": "ping"}, "ping")
        if model == "garbage":
            yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
            return
        for i, word in enumerate(words(text)):
            if i == 2 and model == "break":
                raise ConnectionDropped
            if i == 2 and model == "stream-error":
                yield sse(error_body("overloaded_error", "Overloaded"), "error")
                return
            yield sse(
                {"type": "content_block_delta", "index": at, "delta": {"type": "text_delta", "text": word}},
                "content_block_delta",
            )
            await asyncio.sleep(0)
        yield sse({"type": "content_block_stop", "index": at}, "content_block_stop")
        yield sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence" if hit else "end_turn", "stop_sequence": hit},
                "usage": {"output_tokens": len(words(text)) + thinking_tokens(thoughts)},
            },
            "message_delta",
        )
        yield sse({"type": "message_stop"}, "message_stop")


SIGNING_KEY = b"fake-anthropic-thinking"
REDACTED_DATA = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"


def sign(thinking: str) -> str:
    return base64.b64encode(hmac.new(SIGNING_KEY, thinking.encode(), hashlib.sha256).digest()).decode()


# Which thinking a model takes, by name (Claude 4.6 added adaptive thinking; Opus 4.7 and later, and the
# Mythos and Fable models, take only adaptive thinking); other names take only a budget.
ADAPTIVE_ONLY = (
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-sonnet-5",
    "claude-haiku-5",
    "claude-mythos",
    "claude-fable",
)
ADAPTIVE_TOO = ("claude-opus-4-6", "claude-sonnet-4-6")
# Claude 5.5 (and Fable and Mythos 5.1) always think: no sampling settings, no forced tool, no disabled
# thinking (each a 400), and thinking blocks come back by default with their text omitted.
ALWAYS_THINKING = (
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-fable-5-1",
    "claude-mythos-5-1",
)
EFFORTS = ("low", "medium", "high")
OMITTED = "omitted."  # a signature for a block whose thinking was left out (`display: omitted`)
BLOCK_BINDING_BETA = "thinking-binding-controls-2026-08-01"


def efforts(model: str) -> tuple[str, ...]:
    """The `output_config.effort` values a model takes: `max` from Opus 4.6, `xhigh` from Opus 4.7."""
    if model.startswith(ADAPTIVE_ONLY):
        return (*EFFORTS, "xhigh", "max")
    return (*EFFORTS, "max") if model.startswith("claude-opus-4-6") else EFFORTS


def thinking_blocks(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """The answer's thinking blocks, when the request asked for thinking (a budget, or adaptive: the fake
    always thinks then)."""
    thinking = body.get("thinking") or {}
    if str(body.get("model") or "").startswith(ALWAYS_THINKING):
        thinking = {"type": "adaptive", "display": "omitted", **thinking}
    if thinking.get("type") not in ("enabled", "adaptive"):
        return []
    thought = f"The user asked: {answer_text(body).removeprefix('Hello! You said: ')[:60]}. Answer briefly."
    if thinking.get("display") == "omitted":
        return [{"type": "thinking", "thinking": "", "signature": omitted_signature(model, thought)}]
    blocks = [{"type": "thinking", "thinking": thought, "signature": signature(model, thought)}]
    if model == "redacted":
        blocks.append({"type": "redacted_thinking", "data": REDACTED_DATA})
    return blocks


def thinking_tokens(blocks: list[dict[str, Any]]) -> int:
    return sum(len(words(b.get("thinking", ""))) for b in blocks)


def thinking_events(index: int, block: dict[str, Any]) -> list[bytes]:
    """A thinking block streamed as the API streams it: its text in two deltas, then its signature."""
    if block["type"] == "redacted_thinking":
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return [
            sse(start, "content_block_start"),
            sse({"type": "content_block_stop", "index": index}, "content_block_stop"),
        ]
    text = block["thinking"]
    half = len(text) // 2
    empty = {"type": "thinking", "thinking": ""}
    events = [
        sse({"type": "content_block_start", "index": index, "content_block": empty}, "content_block_start")
    ]
    for piece in (text[:half], text[half:]):
        delta = {"type": "thinking_delta", "thinking": piece}
        events.append(
            sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
        )
    delta = {"type": "signature_delta", "signature": block["signature"]}
    events.append(sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"))
    events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return events


def thinking_refusal(body: dict[str, Any], *, beta: str = "") -> str | None:
    """What the API answers with a 400 about thinking, or None. A block of another model sent to a model
    whose blocks are bound is dropped from `body` when the request asks for that (with its beta header),
    as the API drops it; else it is the 400."""
    thinking = body.get("thinking")
    model = str(body.get("model") or "")
    binding = (thinking or {}).get("block_binding")
    if binding is not None and BLOCK_BINDING_BETA not in beta:
        return f"thinking.block_binding: requires the `anthropic-beta: {BLOCK_BINDING_BETA}` header"
    drop = (binding or {}).get("prefix_mismatch_behavior") == "drop_block"
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, block in enumerate(list(content)):
            if block.get("type") != "thinking" or _signed(block, model):
                continue
            if not model.startswith(ALWAYS_THINKING):
                return "Invalid `signature` in `thinking` block"
            if not drop:
                return (
                    f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block. The block is bound "
                    "to a different conversation. Remove the block, or set "
                    '`thinking.block_binding.prefix_mismatch_behavior` to "drop_block".'
                )
            content.remove(block)
    if model.startswith(ALWAYS_THINKING):
        for field in ("temperature", "top_p", "top_k"):
            if field in body:
                return f"{field}: is not supported on this model: it always thinks"
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            return "tool_choice: forced tool use is not supported on this model; use `auto`"
        if (thinking or {}).get("type") == "disabled":
            return "thinking.type: thinking cannot be disabled on this model"
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and effort not in efforts(model):
        allowed = ", ".join(f"'{e}'" for e in efforts(model))
        return f"output_config.effort: Input should be {allowed} for this model"
    if thinking is None or thinking.get("type") == "disabled":
        return None
    if thinking.get("type") == "adaptive":
        if not model.startswith(ADAPTIVE_ONLY + ADAPTIVE_TOO):
            return "thinking.type: adaptive thinking is not supported on this model"
        if "budget_tokens" in thinking:
            return "thinking.adaptive.budget_tokens: Extra inputs are not permitted"
    elif model.startswith(ADAPTIVE_ONLY):
        return (
            "thinking.type.enabled is not supported for this model. Use thinking.type.adaptive and "
            "output_config.effort to control thinking behavior."
        )
    else:
        budget = thinking.get("budget_tokens")
        if thinking.get("type") != "enabled" or not isinstance(budget, int):
            return "thinking: budget_tokens: Field required"
        if budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body.get("max_tokens", 0):
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if body.get("temperature") not in (None, 1):
        return "`temperature` may only be set to 1 when thinking is enabled"
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    if thinking.get("type") == "adaptive":  # the model may have answered a turn without thinking
        return None
    turns = body.get("messages") or []
    if turns and turns[-1].get("role") == "user" and _tool_results(turns[-1]) and len(turns) > 1:
        last = turns[-2].get("content")
        if isinstance(last, list) and last and last[0].get("type") not in ("thinking", "redacted_thinking"):
            return (
                f"messages.{len(turns) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                f"but found `{last[0].get('type')}`. When `thinking` is enabled, a final `assistant` "
                "message must start with a thinking block."
            )
    return None


def signature(model: str, thought: str) -> str:
    """A block's signature: its text's; for a model whose blocks are bound, its text's and the model's."""
    return sign(f"{model}\n{thought}") if model.startswith(ALWAYS_THINKING) else sign(thought)


def omitted_signature(model: str, thought: str) -> str:
    bound = f"{model}:" if model.startswith(ALWAYS_THINKING) else ""
    return f"{OMITTED}{bound}{sign(thought)}"


def _signed(block: dict[str, Any], model: str) -> bool:
    """A thinking block as this fake returned it (to this model, where blocks are bound): its text signed,
    or left out with an omitted mark."""
    given = str(block.get("signature") or "")
    if given.startswith(OMITTED) and not block.get("thinking"):
        bound = given.removeprefix(OMITTED).rpartition(":")[0]
        return not model.startswith(ALWAYS_THINKING) or bound == model
    return given == signature(model, block.get("thinking", ""))


def _tool_results(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


async def _dropping(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise ConnectionDropped
