"""The fake OpenAI's chat completions answers (`fake_openai.FakeOpenAI.chat` picks one by the model name): a
completion whole (`n` answers, logprobs, a reasoner's reasoning, the usage), a stream as OpenAI streams one
(the answers' chunks interleaved, a token a chunk with logprobs; `drip-`, `break`, `stream-error`,
`garbage`), the calls of `tool-call` (PARALLEL: three, streamed as compatible servers may) and a
`refusal`; OpenAI's 400 for bad `top_logprobs`."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.support import fake_logprobs
from tests.support.fake_openai_refusals import effort_in_force
from tests.support.fake_scenarios import (
    ConnectionDropped,
    Scenarios,
    answer_text,
    long_words,
    sse,
    think_seconds,
    words,
)

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


PARALLEL = "Three calls, streamed as compatible servers may."
# the calls of `tool-call` asked PARALLEL (id, arguments); the last streams no arguments, `{}` whole
PARALLEL_CALLS = (
    ("call_par_1", '{"city": "Paris"}'),
    ("call_par_2", '{"city": "Oslo"}'),
    ("call_par_3", "{}"),
)


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


def finish_reason(model: str, text: str) -> str:
    """`length` for a `long-` answer cut short of its words (`fake_scenarios.long_answer`), else `stop`."""
    return "length" if len(words(text)) < long_words(model) else "stop"


def drip_seconds(model: str) -> float:
    return float(model.removeprefix("drip-")) if model.startswith("drip-") else 0.0


def pause_seconds(model: str) -> float:
    """`pause-<seconds>`: silent that long after its first word, as a reasoning model that reasons again
    between a text part and a tool call (OpenAI sends nothing meanwhile), then the rest at once."""
    return float(model.removeprefix("pause-")) if model.startswith("pause-") else 0.0


class ChatAnswers:
    """The answers of `FakeOpenAI.chat` (which holds the `scenarios` its streams count in)."""

    scenarios: Scenarios

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
            finish = finish_reason(model, said)
            choices.append({"index": index, "message": message, "logprobs": entries, "finish_reason": finish})
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
        ending with its finish reason; the usage (all the answers') last. A `think-` model's first chunk
        comes that long after its response began."""
        await asyncio.sleep(think_seconds(model))
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
        pause = pause_seconds(model)
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
                    await asyncio.sleep(drip_seconds(model) + pause)
                    pause = 0.0
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
        return [*out, (chunk({}, finish_reason(model, text)), False)]


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
