"""OpenAI's legacy completions (`POST /v1/completions`) as a fourth face of the same pipeline, for the
clients and tools that still call it.

The models behind the gateway are chat models, so the prompt becomes the user's turn (as LiteLLM serves the
endpoint from chat models): the answer is a reply to the prompt, not a continuation of its text. One
prompt per request; several answers to it (`n`) as the chat face gives them; token log probabilities
(`logprobs`: N alternatives per token) in this endpoint's shape. What only a completion model's own
machinery gives (insertion with `suffix`, `echo`, `best_of`, prompts as token ids, several prompts at once)
is refused with 400 `unsupported_parameter` rather than answered without it. `max_tokens` defaults to 16,
as OpenAI's does.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from switchyard.common.events import ChatMessage, TaskCompleted, TaskFailed, TaskSubmitted, TokenLogprob
from switchyard.common.events.tasks import MAX_CHOICES
from switchyard.common.streaming import Chunk
from switchyard.gateway import bounds, schemas
from switchyard.gateway.bodies import json_object, validated
from switchyard.gateway.completions import answers_of
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.openai_rules import check_stream_options
from switchyard.gateway.outcomes import Fault, fault_sse, in_order, sse, sse_error
from switchyard.gateway.schemas import (
    ChatCompletionRequest,
    StreamOptions,
    Unsupported,
    check_prompt_size,
    usage_json,
)
from switchyard.gateway.tasks import Stopped, TimedOut

COMPLETION_ID = "cmpl-"  # a completion's id is this and its task's id
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint
MAX_LOGPROBS = 5  # OpenAI's limit for this endpoint's `logprobs` (alternatives per token)

UNSUPPORTED: Unsupported = {
    "suffix": (
        lambda v: v not in (None, ""),
        "insertion (a suffix) needs a completion model; none is served",
    ),
    "echo": (lambda v: v is True, "the prompt is not echoed back"),
    "best_of": (
        lambda v: v not in (None, 1),
        "no server-side best-of: `best_of` must be 1 (`n` asks for several answers, all returned)",
    ),
    "logit_bias": schemas.UNSUPPORTED["logit_bias"],
}


class CompletionsRequest(BaseModel):
    """Other fields OpenAI accepts that change nothing Switchyard returns are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    prompt: str | list[Any]
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)  # none: OpenAI's 16
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    user: str | None = None
    # The chosen tokens' log probabilities with this many alternatives each (0: none); null: not asked.
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS, strict=True)


@bounds.reads
def parse_request(body: bytes, *, max_prompt_chars: int) -> ChatCompletionRequest:
    raw = json_object(body)
    if isinstance(raw.get("prompt"), list):  # refused before a list of millions of token ids is validated
        _one_prompt(raw["prompt"])
    bounds.check_stop(raw.get("stop"), param="stop")
    parsed = validated(raw, CompletionsRequest, UNSUPPORTED)
    check_stream_options(parsed.stream, parsed.stream_options)
    messages = [ChatMessage(role="user", content=_one_prompt(parsed.prompt))]
    check_prompt_size(messages, max_prompt_chars)
    return ChatCompletionRequest(
        model=parsed.model,
        messages=messages,
        stream=parsed.stream,
        stream_options=parsed.stream_options,
        max_tokens=parsed.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop,
        seed=parsed.seed,
        presence_penalty=parsed.presence_penalty,
        frequency_penalty=parsed.frequency_penalty,
        user=parsed.user,
        n=parsed.n,
        logprobs=parsed.logprobs is not None,
        top_logprobs=parsed.logprobs,
    )


def _one_prompt(prompt: str | list[Any]) -> str:
    """The request's one prompt, as text: a string, or a list holding one string."""
    if isinstance(prompt, list):
        if prompt and isinstance(prompt[0], int | list):  # its first item says: not each of millions
            raise InvalidRequest(
                "prompts as token ids are not served (the models behind this gateway have other tokenizers);"
                " send the text",
                code="unsupported_parameter",
                param="prompt",
            )
        if len(prompt) != 1:
            raise InvalidRequest(
                f"one prompt per request (this one has {len(prompt)}); send a request for each",
                code="unsupported_parameter",
                param="prompt",
            )
        first = prompt[0]
        if not isinstance(first, str):
            raise InvalidRequest(
                "prompt.0: a prompt is text (a string)", code="invalid_type", param="prompt.0"
            )
        prompt = first
    if not prompt.strip():
        raise InvalidRequest("prompt is empty", code="invalid_value", param="prompt")
    return prompt


class Offsets:
    """Where each token of one answer starts in its text (`text_offset`), counted in characters from the
    answer's start, token after token (a stream's chunks continue the count). A token that ends inside a
    character (its `bytes` hold part of it) is counted from that character's start, as is the next."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chars = 0

    def logprobs_json(self, tokens: list[TokenLogprob] | None) -> dict[str, Any] | None:
        """The tokens in this endpoint's shape (null when the request did not ask for them, or they were
        withheld). `top_logprobs`: each token's alternatives as {token: logprob}, with the chosen token
        among them, as OpenAI gives up to N + 1."""
        if tokens is None:
            return None
        offsets = []
        tops = []
        for token in tokens:
            offsets.append(self._chars)
            self._chars += len(self._decoder.decode(bytes(token.utf8())))
            top: dict[str, float] = {}
            for alternative in (*token.top_logprobs, token):  # most likely first; a repeated text once
                top.setdefault(alternative.token, alternative.logprob)
            tops.append(top)
        return {
            "tokens": [t.token for t in tokens],
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": tops,
            "text_offset": offsets,
        }


def _body(
    task: TaskSubmitted,
    *,
    created: int,
    model: str,
    text: str,
    finish_reason: str | None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"{COMPLETION_ID}{task.task_id}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [_choice(text, index, finish_reason, logprobs)],
    }


def _choice(
    text: str, index: int, finish_reason: str | None, logprobs: dict[str, Any] | None
) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def completion_json(task: TaskSubmitted, done: TaskCompleted) -> bytes:
    body = _body(
        task,
        created=int(time.time()),
        model=done.model,
        text=done.content,
        finish_reason=done.finish_reason,
        logprobs=Offsets().logprobs_json(done.logprobs),
    )
    others = [
        _choice(c.content, i, c.finish_reason, Offsets().logprobs_json(c.logprobs))
        for i, c in enumerate(done.other_choices, start=1)
    ]
    body["choices"] += others
    return orjson.dumps({**body, "usage": usage_json(done.usage)})


async def stream_events(
    task: TaskSubmitted,
    head: list[Chunk | TaskCompleted],
    rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
    *,
    timeout_s: float,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE in OpenAI's legacy format: each answer's text as it comes, under its `index` (several answers,
    `n`, interleaved), and each of several answers' last chunk with its finish reason when its end chunk
    comes; at the result, the text of an answer no chunk carried, each other answer's last chunk with
    its finish reason, the usage (`stream_options.include_usage`), `[DONE]`. The model's thinking is not
    part of a text completion. A break after text began ends with an explicit error event, never [DONE]."""
    created = int(time.time())
    model = task.request.model
    asked = task.chat().logprobs
    offsets: dict[int, Offsets] = {}  # each streamed answer's, across its chunks
    ended: set[int] = set()  # the answers whose finish reason went out (of several, at their end chunk)
    try:
        async for item in in_order(head, rest):
            if isinstance(item, Fault):
                yield fault_sse(item)
                return
            if isinstance(item, Chunk):
                model = item.model or model
                if item.finish_reason is not None and not item.done:  # Chunk.ends_answer, inlined
                    # one of several answers ended: its finish reason now
                    ended.add(item.choice)
                    reason = item.finish_reason
                    yield sse(
                        _body(
                            task,
                            created=created,
                            model=model,
                            text="",
                            finish_reason=reason,
                            index=item.choice,
                        )
                    )
                elif item.delta or item.logprobs:  # tokens may come without text (a cut character's end)
                    counted = offsets.get(item.choice) or offsets.setdefault(item.choice, Offsets())
                    body = _body(
                        task,
                        created=created,
                        model=model,
                        text=item.delta or "",
                        finish_reason=None,
                        index=item.choice,
                        logprobs=counted.logprobs_json((item.logprobs or []) if asked else None),
                    )
                    yield sse(body)
                continue
            model = item.model
            for index, answer in enumerate(answers_of(item)):
                if index in ended:
                    continue
                # an answer no chunk carried: a cache replay, an output guardrail's
                if index not in offsets and answer.content:
                    whole = _body(
                        task,
                        created=created,
                        model=model,
                        text=answer.content,
                        finish_reason=None,
                        index=index,
                        logprobs=Offsets().logprobs_json(answer.logprobs),
                    )
                    yield sse(whole)
                end = _body(
                    task,
                    created=created,
                    model=model,
                    text="",
                    finish_reason=answer.finish_reason,
                    index=index,
                )
                yield sse(end)
            if include_usage:
                usage = {
                    **_body(task, created=created, model=model, text="", finish_reason=None),
                    "choices": [],
                }
                yield sse({**usage, "usage": usage_json(item.usage)})
            yield b"data: [DONE]\n\n"
            return
    except TimedOut as exc:
        yield sse_error(str(exc), "task_timeout", "timeout")
    except Stopped:
        yield sse_error(Stopped.message, Stopped.code, "service_unavailable")
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
