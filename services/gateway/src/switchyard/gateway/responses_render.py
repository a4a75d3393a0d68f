"""The Responses face's answer whole: a Response (reasoning, message and function_call items, usage),
and the items as its stream's events carry them too (`responses_stream.py`). The request side is
`responses.py`.

Token log probabilities, when the request asked (`include`), are the output_text part's `logprobs`: the
answer's tokens whole, and each text delta's own in its `response.output_text.delta` event; `[]` when not
asked or withheld (an answer the output guardrails changed), as OpenAI gives a part that has none."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from switchyard.common.events import (
    TaskCompleted,
    TaskSubmitted,
    ThinkingBlock,
    TokenLogprob,
    ToolCall,
    Usage,
)
from switchyard.gateway.errors import APIError
from switchyard.gateway.responses import MESSAGE_ITEM, REASONING_ITEM, RESPONSE_ID, carrier
from switchyard.gateway.responses_tools import ClientTool, custom_input
from switchyard.gateway.schemas import token_json

# how the client names tools the pipeline knows by other names or shapes (`responses.tools_of`)
Named = Mapping[str, ClientTool] | None


def usage_json(usage: Usage) -> dict[str, Any]:
    """The Response's usage; its `output_tokens_details.reasoning_tokens` is required: 0 where the
    provider does not count the reasoning apart (Anthropic, the local model)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }


# The codes a Response's `error` may have (openai-python's `ResponseError.code`, a closed Literal): a failure
# is said by the nearest of them, its own type, code and param beside it (`type` and `param` are
# ResponseError's too, openai 3.54.0: "the original error type").
RATE_LIMITED = "rate_limit_exceeded"
INVALID_PROMPT = "invalid_prompt"
SERVER_ERROR = "server_error"


def failure_json(said: APIError, message: str) -> dict[str, Any]:
    """`response.failed`'s `error`: `rate_limit_exceeded` for a failure answered 429 before the stream, or
    every candidate rate-limited; `invalid_prompt` for one answered 400 (the prompt: too long for the
    model, refused by its content policy or as a bad request); `server_error` for the rest (it was
    `server_error` for all). `type` and `param` are the failure's own, as its non-stream answer says them;
    our code is the `error` event's, sent just before."""
    if said.status == 429 or said.code == "provider_rate_limited":
        code = RATE_LIMITED
    elif said.status == 400:
        code = INVALID_PROMPT
    else:
        code = SERVER_ERROR
    return {"code": code, "message": message, "type": said.type, "param": said.param}


def shell(
    task: TaskSubmitted, *, model: str, created: int, status: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A response's fields besides its output and usage, from the request as the pipeline holds it, and
    `fields` (what a stored conversation sets: `store`, `previous_response_id`)."""
    request = task.chat()
    fmt = request.response_format or {"type": "text"}
    if fmt.get("type") == "json_schema":
        fmt = {"type": "json_schema", **(fmt.get("json_schema") or {})}
    choice: Any = request.tool_choice or "auto"
    if isinstance(choice, dict):
        choice = {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return {
        "id": f"{RESPONSE_ID}{task.task_id}",
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_tokens,
        "tool_choice": choice,
        "tools": [
            {"type": "function", **t.function.model_dump(mode="json", exclude_none=True)}
            for t in request.tools or []
        ],
        "text": {"format": fmt},
        "reasoning": {"effort": request.reasoning.level()} if request.reasoning else None,
        "store": False,
        "previous_response_id": None,
        "metadata": {},
        "usage": None,
        **(fields or {}),
    }


def logprobs_json(tokens: list[TokenLogprob] | None) -> list[dict[str, Any]]:
    """Tokens as OpenAI's entries (chat's, `schemas.token_json`: `bytes` always given); None (not asked)
    is none."""
    return [token_json(t) for t in tokens or ()]


def text_part(text: str, tokens: list[TokenLogprob] | None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs_json(tokens)}


def message_item(
    task: TaskSubmitted,
    text: str,
    *,
    status: str,
    tokens: list[TokenLogprob] | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    """The answer's message; a refusal (the model's instead of the answer) as a `refusal` part, as OpenAI
    gives one."""
    parts = [text_part(text, tokens)] if text or not refusal else []
    if refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    return {
        "id": f"{MESSAGE_ITEM}{task.task_id}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def reasoning_item(task: TaskSubmitted, n: int, block: ThinkingBlock | None) -> dict[str, Any]:
    """The `n`th thinking block of an answer as a reasoning item (None: the item as it starts, empty)."""
    item: dict[str, Any] = {"id": f"{REASONING_ITEM}{task.task_id}_{n}", "type": "reasoning", "summary": []}
    if block is not None:
        if block.thinking:
            item["summary"] = [{"type": "summary_text", "text": block.thinking}]
        item["encrypted_content"] = carrier(block)
    return item


def call_item(
    task: TaskSubmitted,
    n: int,
    call: ToolCall,
    *,
    status: str = "completed",
    arguments: str | None = None,
    named: Named = None,
) -> dict[str, Any]:
    """The answer's `n`th tool call as an item; its id names the response (`fc_<task>_<n>`, `ctc_` for a
    custom tool's), as every output item's does, so that a later request's `item_reference` to it is
    found. A call of a namespace's tool has the tool's `name` and its `namespace`; a custom tool's is a
    `custom_tool_call` with its text as `input` (`named`: how the client names those tools)."""
    client = (named or {}).get(call.function.name) or ClientTool(call.function.name)
    given = call.function.arguments if arguments is None else arguments
    item: dict[str, Any] = {
        "id": f"{'ctc' if client.custom else 'fc'}_{task.task_id}_{n}",
        "type": "custom_tool_call" if client.custom else "function_call",
        "status": status,
        "call_id": call.id,
        "name": client.name,
    }
    if client.namespace is not None:
        item["namespace"] = client.namespace
    if client.custom:
        item["input"] = custom_input(given) if given else ""
    else:
        item["arguments"] = given
    return item


def _ending(done: TaskCompleted) -> tuple[str, dict[str, str] | None]:
    """The response's status and incomplete_details: a cut answer is `incomplete`, as OpenAI says it."""
    if done.finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if done.finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_body(
    task: TaskSubmitted,
    done: TaskCompleted,
    *,
    created: int,
    fields: dict[str, Any] | None = None,
    named: Named = None,
) -> dict[str, Any]:
    status, incomplete = _ending(done)
    body = shell(task, model=done.model, created=created, status=status, fields=fields)
    output = [reasoning_item(task, n, block) for n, block in enumerate(done.thinking or [])]
    if done.content or done.refusal or not done.tool_calls:
        output.append(
            message_item(task, done.content, status=status, tokens=done.logprobs, refusal=done.refusal)
        )
    output += [call_item(task, n, c, named=named) for n, c in enumerate(done.tool_calls or [])]
    body.update(output=output, incomplete_details=incomplete, usage=usage_json(done.usage))
    return body


def response_json(task: TaskSubmitted, done: TaskCompleted) -> bytes:
    return orjson.dumps(response_body(task, done, created=int(time.time())))
