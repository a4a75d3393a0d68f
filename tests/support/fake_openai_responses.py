"""The fake OpenAI's `/v1/responses`: OpenAI's Responses API as its reference and error messages describe
it, written apart from the adapter (`providers/openai/responses.py`), so a test checks the adapter against
the API, not against itself. Stateless, as the adapter uses it: `store` must be false.

It refuses, with OpenAI's 400 bodies: a parameter the API does not have (chat completions' `stop`,
`seed`, `max_tokens`, `messages`, ...), a message part of the wrong kind for its role, a function output
whose call is not in the input, a tool or a tool choice in chat completions' nested shape, a strict
function (the default here) whose schema leaves an object open, a JSON schema format without its name,
and what the reasoning models refuse (`fake_openai_refusals.py`: an effort they lack, sampling fields at
an effort other than none). Tools go with any effort here.

Reasoning, as OpenAI keeps it for a stateless caller: with `include: ["reasoning.encrypted_content"]` a
reasoning model's reasoning item carries `encrypted_content`; an input reasoning item must bring back
content this server issued under that id (else 400, as OpenAI cannot decrypt or find it) and be
followed by the item it preceded (a function call or an assistant message), and `Reasoning.back`
records the ids that came back.

Answers: "Hello! You said: <last user text>", cut at `max_output_tokens` words (status `incomplete`);
with tools and a tool choice that forces one (`required` or a named function), or for the model
`tool-call`, a call of the forced (else the first) tool with {"city": "Paris"}; a reasoning model's output
starts with a reasoning item (with a summary when `reasoning.summary` asks for one). Streams send the
typed events in OpenAI's order, ending with `response.completed` (or `.incomplete`). The last user text
picks the failures, so any model name can meet them: `stream-error` sends `response.failed` after some
text, `break` drops the connection, `bad-logprobs` sends its first token's log probability as null.

With `include: ["message.output_text.logprobs"]` the output text part carries `logprobs`: its tokens
(`fake_logprobs.py`), each with `top_logprobs` alternatives (`top_logprobs`, 0 by default); a stream then
sends a token a `response.output_text.delta`, with its entry in the event's `logprobs`. Without it, the
part has no `logprobs` and the deltas an empty list.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.support import fake_logprobs
from tests.support.fake_openai_refusals import HIGH, MODELS, SAMPLING, SNAPSHOT

PARAMETERS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "store",
        "stream",
        "stream_options",
        "max_output_tokens",
        "reasoning",
        "temperature",
        "top_p",
        "text",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "include",
        "metadata",
        "previous_response_id",
        "truncation",
        "user",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "background",
        "max_tool_calls",
        "top_logprobs",
    }
)
INPUT_PARTS = ("input_text", "input_image", "input_file")
OUTPUT_PARTS = ("output_text", "refusal")
# Efforts the Responses API takes beyond chat completions' (GPT-6.1 Sol's max)
RESPONSES_EFFORTS = {"gpt-6.1-sol": (*HIGH, "xhigh", "max")}
SUMMARY = "The user wants the weather; I should call the tool."
LOGPROBS = "message.output_text.logprobs"


class Dropped(Exception):
    """Raised inside a streamed body: uvicorn then closes the connection without finishing the body."""


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _error(message: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": code}


def _quoted(values: tuple[str, ...]) -> str:
    q = [f"'{v}'" for v in values]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + f" and {q[-1]}"


@dataclass
class Reasoning:
    """The encrypted reasoning this server gave out (by item id) and the ids that came back."""

    issued: dict[str, str] = field(default_factory=dict)
    back: list[str] = field(default_factory=list)


def refusal(body: dict[str, Any], reasoning: Reasoning | None = None) -> dict[str, Any] | None:
    """OpenAI's error object for what /v1/responses refuses in `body`, or None."""
    for name in body:
        if name not in PARAMETERS:
            return _error(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    if body.get("store") is not False:
        return _error("This fake is stateless: send store: false.", "store", "invalid_value")
    items = body.get("input")
    if not isinstance(items, list | str):
        return _error("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    calls: set[str] = set()
    for i, item in enumerate(items if isinstance(items, list) else []):
        refused = _item_refusal(i, item, calls) or _reasoning_refusal(i, items, reasoning or Reasoning())
        if refused is not None:
            return refused
    for i, tool in enumerate(body.get("tools") or []):
        open_object = _open_object(tool.get("parameters") or {})
        if tool.get("strict", True) and open_object is not None:  # strict unless said otherwise
            return _error(
                f"Invalid schema for function '{tool.get('name')}': In context={open_object}, "
                "'additionalProperties' is required to be supplied and to be false.",
                f"tools[{i}].parameters",
                "invalid_function_parameters",
            )
        if "function" in tool:
            return _error(
                f"Unknown parameter: 'tools[{i}].function'.", f"tools[{i}].function", "unknown_parameter"
            )
        if not tool.get("name"):
            return _error(
                f"Missing required parameter: 'tools[{i}].name'.",
                f"tools[{i}].name",
                "missing_required_parameter",
            )
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and "function" in choice:
        return _error(
            "Unknown parameter: 'tool_choice.function'.", "tool_choice.function", "unknown_parameter"
        )
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema" and not fmt.get("name"):
        return _error(
            "Missing required parameter: 'text.format.name'.",
            "text.format.name",
            "missing_required_parameter",
        )
    return _model_refusal(body)


def _open_object(schema: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where a schema has an object that strict mode refuses (additionalProperties not false), or None."""
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        return path
    for name, sub in (schema.get("properties") or {}).items():
        found = _open_object(sub, (*path, "properties", name))
        if found is not None:
            return found
    return _open_object(schema.get("items"), (*path, "items")) if "items" in schema else None


def _reasoning_refusal(i: int, items: list[dict[str, Any]], reasoning: Reasoning) -> dict[str, Any] | None:
    item = items[i]
    if item.get("type") != "reasoning":
        return None
    rid = str(item.get("id"))
    if "encrypted_content" not in item:
        return _error(
            f"Item with id '{rid}' not found. Items are not persisted when `store` is set to false. "
            "Try again with `store` set to true, or remove this item from your input.",
            "input",
            None,
        )
    if reasoning.issued.get(rid) != item["encrypted_content"]:
        return _error(f"The encrypted content for item {rid} could not be verified.", "input", None)
    following = items[i + 1] if i + 1 < len(items) else {}
    if following.get("type") != "function_call" and following.get("role") != "assistant":
        return _error(
            f"Item '{rid}' of type 'reasoning' was provided without its required following item.",
            "input",
            None,
        )
    reasoning.back.append(rid)
    return None


def _item_refusal(i: int, item: dict[str, Any], calls: set[str]) -> dict[str, Any] | None:
    kind = item.get("type", "message")
    if kind == "reasoning":
        return None
    if kind == "function_call":
        calls.add(str(item.get("call_id")))
        if not item.get("name") or not isinstance(item.get("arguments"), str):
            return _error(
                f"Invalid 'input[{i}]': a function call needs a name and arguments.", f"input[{i}]", None
            )
        return None
    if kind == "function_call_output":
        if item.get("call_id") not in calls:
            return _error(
                f"No tool call found for function call output with call_id {item.get('call_id')}.",
                "input",
                None,
            )
        return None
    if kind != "message" or item.get("role") not in ("user", "assistant", "system", "developer"):
        return _error(f"Invalid value: '{kind}'.", f"input[{i}]", "invalid_value")
    if "tool_calls" in item or "tool_call_id" in item:
        return _error(f"Unknown parameter: 'input[{i}].tool_calls'.", f"input[{i}]", "unknown_parameter")
    content = item.get("content")
    allowed = OUTPUT_PARTS if item["role"] == "assistant" else INPUT_PARTS
    for j, part in enumerate(content if isinstance(content, list) else []):
        if part.get("type") not in allowed:
            return _error(
                f"Invalid value: '{part.get('type')}'. Supported values are: {_quoted(allowed)}.",
                f"input[{i}].content[{j}]",
                "invalid_value",
            )
    return None


def _model_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    name = SNAPSHOT.sub("", str(body.get("model", "")))
    model = MODELS.get(name)
    if model is None:
        return None
    effort = (body.get("reasoning") or {}).get("effort", model.default)
    efforts = RESPONSES_EFFORTS.get(name, model.efforts)
    if effort not in efforts:
        return _error(
            f"Unsupported value: 'reasoning.effort' does not support '{effort}' with this model. "
            f"Supported values are: {_quoted(efforts)}.",
            "reasoning.effort",
            "unsupported_value",
        )
    for name in (f for f in SAMPLING if f in body):
        if effort != "none":
            return _error(
                f"Unsupported parameter: '{name}' is not supported with this model.",
                name,
                "unsupported_parameter",
            )
    return None


def last_user_text(body: dict[str, Any]) -> str:
    items = body["input"]
    if isinstance(items, str):
        return items
    users = [it for it in items if it.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if p.get("type") == "input_text")
    return str(content)


def output_of(
    body: dict[str, Any], model: str, reasoning: Reasoning | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The output items, and the incomplete reason (None: completed)."""
    out: list[dict[str, Any]] = []
    if SNAPSHOT.sub("", model) in MODELS:
        summary = (
            [{"type": "summary_text", "text": SUMMARY}]
            if (body.get("reasoning") or {}).get("summary")
            else []
        )
        item = {"id": f"rs_{uuid.uuid4().hex[:16]}", "type": "reasoning", "summary": summary}
        if "reasoning.encrypted_content" in (body.get("include") or []):
            item["encrypted_content"] = f"gAAAA{uuid.uuid4().hex}"
            (reasoning or Reasoning()).issued[item["id"]] = item["encrypted_content"]
        out.append(item)
    choice = body.get("tool_choice")
    forced = choice == "required" or isinstance(choice, dict)
    if body.get("tools") and (model == "tool-call" or forced):
        name = choice["name"] if isinstance(choice, dict) else body["tools"][0]["name"]
        out.append(
            {
                "id": f"fc_{uuid.uuid4().hex[:16]}",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_fake_1",
                "name": name,
                "arguments": '{"city": "Paris"}',
            }
        )
        return out, None
    words = f"Hello! You said: {last_user_text(body)}".split(" ")
    cap = body.get("max_output_tokens")
    cut = isinstance(cap, int) and len(words) > cap
    text = " ".join(words[:cap] if cut else words)
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if LOGPROBS in (body.get("include") or []):
        part["logprobs"] = fake_logprobs.openai_entries(
            fake_logprobs.tokens(text), int(body.get("top_logprobs") or 0)
        )
        if last_user_text(body) == "bad-logprobs" and part["logprobs"]:
            part["logprobs"][0]["logprob"] = None
    out.append(
        {
            "id": f"msg_{uuid.uuid4().hex[:16]}",
            "type": "message",
            "status": "incomplete" if cut else "completed",
            "role": "assistant",
            "content": [part],
        }
    )
    return out, "max_output_tokens" if cut else None


def response_object(model: str, output: list[dict[str, Any]], cut: str | None) -> dict[str, Any]:
    text = " ".join(p["text"] for it in output if it["type"] == "message" for p in it["content"])
    reasoning = 64 if any(it["type"] == "reasoning" for it in output) else 0
    return {
        "id": f"resp_{uuid.uuid4().hex[:24]}",
        "object": "response",
        "created_at": 0,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": cut} if cut else None,
        "error": None,
        "model": model,
        "output": output,
        "store": False,
        "usage": {
            "input_tokens": 21,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(text.split()) + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": 21 + len(text.split()) + reasoning,
        },
    }


def answer(body: dict[str, Any], model: str, reasoning: Reasoning | None = None) -> Response:
    output, cut = output_of(body, model, reasoning)
    whole = response_object(model, output, cut)
    if body.get("stream"):
        return StreamingResponse(_events(whole, last_user_text(body)), media_type="text/event-stream")
    return JSONResponse(whole)


async def _events(whole: dict[str, Any], scenario: str) -> AsyncIterator[bytes]:
    seq = 0

    def event(kind: str, **data: Any) -> bytes:
        nonlocal seq
        seq += 1
        return _sse({"type": kind, "sequence_number": seq, **data})

    shell = {**whole, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    for index, item in enumerate(whole["output"]):
        at = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "reasoning":
            yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
            for s in item["summary"]:
                yield event(
                    "response.reasoning_summary_part.added", summary_index=0, part={**s, "text": ""}, **at
                )
                for piece in s["text"].split(" "):
                    yield event(
                        "response.reasoning_summary_text.delta", summary_index=0, delta=piece + " ", **at
                    )
                yield event("response.reasoning_summary_text.done", summary_index=0, text=s["text"], **at)
            yield event("response.output_item.done", output_index=index, item=item)
        elif item["type"] == "function_call":
            yield event("response.output_item.added", output_index=index, item={**item, "arguments": ""})
            for piece in ('{"city"', ': "Paris"}'):
                yield event("response.function_call_arguments.delta", delta=piece, **at)
            yield event("response.function_call_arguments.done", arguments=item["arguments"], **at)
            yield event("response.output_item.done", output_index=index, item=item)
        else:
            text = item["content"][0]["text"]
            entries = item["content"][0].get("logprobs")  # asked for: a token a delta, with its entry
            yield event("response.output_item.added", output_index=index, item={**item, "content": []})
            empty = {"type": "output_text", "text": "", "annotations": []}
            yield event("response.content_part.added", content_index=0, part=empty, **at)
            pieces = text.split(" ") if entries is None else [e["token"] for e in entries]
            for i, piece in enumerate(pieces):
                if i == 2 and scenario == "break":
                    raise Dropped
                if i == 2 and scenario == "stream-error":
                    error = {
                        "code": "server_error",
                        "message": "The server had an error processing your request.",
                    }
                    yield event("response.failed", response={**shell, "status": "failed", "error": error})
                    return
                if entries is None:
                    delta = piece if i == len(pieces) - 1 else piece + " "
                    yield event("response.output_text.delta", content_index=0, delta=delta, logprobs=[], **at)
                else:
                    yield event(
                        "response.output_text.delta",
                        content_index=0,
                        delta=piece,
                        logprobs=entries[i : i + 1],
                        **at,
                    )
            yield event("response.output_text.done", content_index=0, text=text, logprobs=entries or [], **at)
            yield event("response.content_part.done", content_index=0, part=item["content"][0], **at)
            yield event("response.output_item.done", output_index=index, item=item)
    done = "response.completed" if whole["status"] == "completed" else "response.incomplete"
    yield event(done, response=whole)
