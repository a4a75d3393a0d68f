"""OpenAI's Responses API (`POST /v1/responses`) as a third face of the same pipeline: its request (input
items, instructions, flat function tools, `text.format`, `reasoning`) becomes the pipeline's chat request
here; the result is rendered as a Response in `responses_render.py`, or streamed as its typed events in
`responses_stream.py`.

Responses are stored unless the request says `store: false` (`stored_responses/`): a request may name a
previous response (`previous_response_id`) and stored items (`item_reference`), which are read before this
parser sees the request and handed to it as `items`. A deployment that stores nothing
(SWITCHYARD_RESPONSES_STORE=false) refuses both rather than answer without the context they stand for,
and `conversation` (OpenAI's Conversations API, `conversations/`) as well.

Tools (function, namespace and custom tools; built-in ones left out) are `responses_tools.py`'s.

A model's thinking (an Anthropic model's thinking blocks) is a `reasoning` item: its text as the summary,
and the block itself, signature and all, in `encrypted_content` (Switchyard's own carrier, base64 JSON
behind `THINKING_CARRIER`), so a client that sends output items back, as the Responses API asks, gives
the model its thinking back within a tool loop. OpenAI's own encrypted reasoning is left out: no provider
here can read it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from switchyard.common.events import ChatMessage, ChatRequest, ThinkingBlock, ToolCall
from switchyard.common.events.logprobs import MAX_TOP_LOGPROBS
from switchyard.common.events.tasks import ReasoningEffort
from switchyard.gateway import bounds
from switchyard.gateway.bodies import json_object, validated
from switchyard.gateway.documents import file_id_not_served, from_data_url, in_user_turns_or_tool_results
from switchyard.gateway.errors import InvalidRequest, shown
from switchyard.gateway.openai_rules import check_max_output_tokens
from switchyard.gateway.responses_tools import (
    ADDITIONAL_TOOLS,
    ClientTool,
    allowed_tools,
    client_tools,
    custom_arguments,
    flat_name,
    offered,
    pipeline_tools,
    tool_places,
)
from switchyard.gateway.schemas import (
    ChatCompletionRequest,
    Unsupported,
    check_prompt_size,
    check_tool_turns,
    tool_call,
)

RESPONSE_ID = "resp_"  # a response's id is this and its task's id
MESSAGE_ITEM = "msg_"
REASONING_ITEM = "rs_"
THINKING_CARRIER = "switchyard.thinking.v1:"  # encrypted_content that holds a thinking block
ROLES = ("user", "assistant", "system", "developer")
ITEM_PARTS = ("content", "output")  # an input item's lists (a message's parts, a tool output's), for `bounds`
LOGPROBS_INCLUDE = "message.output_text.logprobs"  # the `include` entry that asks for token log probabilities

# Fields that ask for what Switchyard cannot deliver (see `schemas.UNSUPPORTED`).
UNSUPPORTED: Unsupported = {
    "background": (lambda v: v is True, "background responses are not supported; use POST /v1/tasks"),
    "prompt": (lambda v: v is not None, "stored prompts are not supported"),
}
# ... and, on a deployment that stores no responses, what only stored responses give.
UNSTORED: Unsupported = {
    **UNSUPPORTED,
    "previous_response_id": (
        lambda v: v is not None,
        "this deployment stores no responses (SWITCHYARD_RESPONSES_STORE=false): send the whole "
        "conversation in `input`",
    ),
    "conversation": (
        lambda v: v is not None,
        "this deployment stores no responses and no conversations (SWITCHYARD_RESPONSES_STORE=false): "
        "send the whole conversation in `input`",
    ),
}


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    effort: ReasoningEffort | None = None


class ResponsesRequest(BaseModel):
    """Other fields OpenAI accepts that change nothing Switchyard returns (`service_tier`, `user`,
    `safety_identifier`, ...) are accepted and ignored, and so are `include` entries other than
    LOGPROBS_INCLUDE. `store`, `previous_response_id`, `conversation`, `truncation`, and the
    `instructions` and `metadata` a Response repeats, are read by `stored_responses` too."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, le=1_000_000, strict=True)  # >= 16: `openai_rules`
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    stream: bool = Field(default=False, strict=True)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    text: dict[str, Any] | None = None
    reasoning: ReasoningConfig | None = None
    include: list[Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS, strict=True)
    prompt_cache_key: str | None = Field(default=None, strict=True)
    store: bool | None = Field(default=None, strict=True)
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=200)
    # OpenAI's bounds: at most 16 pairs, keys up to 64 characters, values strings up to 512
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = (
        Field(default=None, max_length=16)
    )

    @field_validator("input", mode="before")
    @classmethod
    def _input_kind(cls, v: Any) -> Any:
        """One error naming both shapes, not pydantic's first union member ("a valid string")."""
        if not isinstance(v, str | list):
            raise PydanticCustomError("input_type", "must be a string or a list of input items")
        return v


class ContinuingRequest(ResponsesRequest):
    """A request that continues a previous response or a conversation: its `input` may be missing or empty,
    as OpenAI's (the model then answers the conversation as it stands)."""

    input: str | list[dict[str, Any]] = ""


class InputTokensRequest(ResponsesRequest):
    """`POST /v1/responses/input_tokens`: a create request's fields, every one optional, as OpenAI's."""

    model: str = Field(default="auto", min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = ""


def parse_count_request(
    body: bytes | dict[str, Any], *, items: list[dict[str, Any]] | None, stored: bool
) -> ChatRequest:
    """An input-token count's body as the chat request it would become (no prompt-size limit: a count says
    how large a prompt is, also one that `/v1/responses` would refuse); `items` and `stored` as for
    `parse_request`."""
    parsed = validated(body, InputTokensRequest, UNSUPPORTED if stored else UNSTORED)
    messages = [ChatMessage(role="system", content=parsed.instructions)] if parsed.instructions else []
    given = parsed.input if items is None else items
    if given:
        messages += chat_messages(given)
    tools = pipeline_tools(offered(parsed.tools, given))
    bounds.check_counted_tools(tools)
    return ChatRequest(
        model=parsed.model, messages=messages or [ChatMessage(role="user", content="")], tools=tools
    )


@bounds.reads
def parse_request(
    body: bytes | dict[str, Any],
    *,
    max_prompt_chars: int,
    items: list[dict[str, Any]] | None = None,
    stored: bool = False,
) -> ChatCompletionRequest:
    """The pipeline's request for a Responses request; `items`, when given, is the whole input to answer
    (the stored conversation it continues and its own input, references resolved), else its `input`.
    `stored`: the deployment stores responses (else what needs them is refused)."""
    raw = body if isinstance(body, dict) else json_object(body)
    bounds.check_conversation(raw.get("input") if items is None else items, param="input", parts=ITEM_PARTS)
    shape = ResponsesRequest if items is None else ContinuingRequest
    parsed = validated(raw, shape, UNSUPPORTED if stored else UNSTORED)
    check_max_output_tokens(parsed.max_output_tokens)
    messages = [ChatMessage(role="system", content=parsed.instructions)] if parsed.instructions else []
    given = parsed.input if items is None else items
    messages += chat_messages(given)
    check_prompt_size(messages, max_prompt_chars)
    # Token log probabilities are asked by the `include` entry; `top_logprobs` without it is accepted and
    # asks for nothing, as OpenAI answers it (the chat face's 400 for `top_logprobs` without `logprobs`
    # follows chat completions, which refuse it).
    asked = LOGPROBS_INCLUDE in (parsed.include or [])
    given_tools = offered(parsed.tools, given)
    tools, choice = allowed_tools(pipeline_tools(given_tools), parsed.tool_choice)
    request = ChatCompletionRequest(
        model=parsed.model,
        messages=messages,
        stream=parsed.stream,
        max_tokens=parsed.max_output_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parsed.parallel_tool_calls,
        response_format=response_format(parsed.text),
        reasoning_effort=parsed.reasoning.effort if parsed.reasoning else None,
        logprobs=asked,
        top_logprobs=(parsed.top_logprobs or 0) if asked else None,
        truncation=parsed.truncation,
        prompt_cache_key=parsed.prompt_cache_key,
    ).with_tool_places(tool_places(given_tools))
    request.with_format_place("text.format", "schema")
    try:
        check_tool_turns(request)
    except InvalidRequest as exc:
        if exc.param is None or not exc.param.startswith("messages"):
            raise
        orphans = [str(m.tool_call_id)[:80] for m in messages if m.role == "tool"][:5]
        raise InvalidRequest(
            "a function_call_output must answer a function_call of the turn just before it "
            f"(call_ids answered: {orphans})",
            code=exc.code,
            param="input",
        ) from exc
    unanswered = _unanswered_call(messages)
    if unanswered is not None:
        raise InvalidRequest(
            f"No tool output found for function call {unanswered}. Each function_call needs its "
            "function_call_output (the same call_id) before the conversation goes on",
            code="invalid_value",
            param="input",
        )
    return request


def tools_of(body: dict[str, Any] | None, items: list[dict[str, Any]] | None) -> dict[str, ClientTool]:
    """How the client names the tools of a request `parse_request` accepted (`body` and `items` as it got
    them), by their names in the pipeline: to render the model's calls."""
    data = body or {}
    return client_tools(offered(data.get("tools"), data.get("input") if items is None else items))


def _unanswered_call(messages: list[ChatMessage]) -> str | None:
    """The call id of the first function call no output answers before the next turn or the end, which
    OpenAI refuses (400, "No tool output found for function call ...") and every provider would: common
    after `previous_response_id` names a response that ended in function calls."""
    waiting: list[str] = []  # the calls of the latest assistant turn, in order
    answered: set[str] = set()  # those a tool message after it answered (a set: no scan per answer)
    for message in messages:
        if message.role == "tool":
            answered.add(message.tool_call_id or "")
            continue
        missing = next((ident for ident in waiting if ident not in answered), None)
        if missing is not None:
            return missing
        waiting = [c.id for c in message.tool_calls or []] if message.role == "assistant" else []
        answered = set()
    return next((ident for ident in waiting if ident not in answered), None)


def chat_messages(items: str | list[dict[str, Any]]) -> list[ChatMessage]:
    """`input` as pipeline messages: a string is one user turn; message items keep their role (text and
    image parts), `function_call` items become the tool calls of the assistant turn they follow (its text,
    or a turn of their own), and each `function_call_output` a `tool` message. A reasoning item that
    carries a thinking block (`carrier`) gives it to the assistant turn that follows; others (OpenAI's own
    encrypted reasoning) are left out: no provider here can read them."""
    if isinstance(items, str):
        return [ChatMessage(role="user", content=items)]
    out: list[ChatMessage] = []
    thinking: list[ThinkingBlock] = []  # carried by reasoning items, for the assistant turn that follows
    for index, item in enumerate(items):
        kind = item.get("type", "message")
        where = f"input.{index}"
        if kind == "message":
            message = _message(item, where)
            if message.role == "assistant" and thinking:
                message.thinking, thinking = thinking, []
            out.append(message)
        elif kind in ("function_call", "custom_tool_call"):
            call = _function_call(item, where)
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not thinking:
                if last.tool_calls is None:
                    last.tool_calls = []
                last.tool_calls.append(call)  # not a copy per call: quadratic in a turn of many calls
            else:
                out.append(ChatMessage(role="assistant", tool_calls=[call], thinking=thinking or None))
                thinking = []
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    f"{where}.call_id: a function_call_output needs its call_id", param=where
                )
            out.append(ChatMessage(role="tool", tool_call_id=call_id, content=_output(output, where)))
        elif kind == "reasoning":
            block = carried_thinking(item.get("encrypted_content"))
            if block is not None:
                thinking.append(block)
        elif kind == ADDITIONAL_TOOLS:  # tools, read with the request's
            continue
        elif kind == "item_reference":  # resolved before parsing, unless nothing is stored here
            raise InvalidRequest(
                f"{where}: item references need stored responses, and this deployment stores none "
                "(SWITCHYARD_RESPONSES_STORE=false): send the item itself",
                code="unsupported_parameter",
                param=where,
            )
        else:
            raise InvalidRequest(
                f"{where}: input items of type {shown(kind)} are not supported here (messages, function and "
                "custom tool calls and their outputs, reasoning and additional_tools are)",
                param=where,
            )
    if not out:
        raise InvalidRequest("input: no message to answer", param="input")
    return out


def carrier(block: ThinkingBlock) -> str:
    """A thinking block as a reasoning item's `encrypted_content` (opaque to the client, which sends it
    back)."""
    raw = orjson.dumps(block.model_dump(exclude_none=True))
    return THINKING_CARRIER + base64.urlsafe_b64encode(raw).decode()


def carried_thinking(content: Any) -> ThinkingBlock | None:
    """The thinking block a reasoning item carries, or None (OpenAI's own encrypted reasoning, nothing, or
    a carrier that does not decode: the turn then goes on without it, as a tool loop begun without
    thinking does)."""
    if not isinstance(content, str) or not content.startswith(THINKING_CARRIER):
        return None
    try:
        raw = base64.urlsafe_b64decode(content[len(THINKING_CARRIER) :].encode())
        return ThinkingBlock.model_validate_json(raw)
    except (binascii.Error, ValueError):
        return None


def _message(item: dict[str, Any], where: str) -> ChatMessage:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"{where}.role: must be one of {', '.join(ROLES)}", param=f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return ChatMessage(role=role, content=content)
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: a string or a list of parts", param=f"{where}.content")
    return ChatMessage(role=role, content=_parts(content, f"{where}.content", role=role))


IMAGE_DETAILS = ("auto", "low", "high", "original")  # the openai SDK's ImageDetail


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An input_image's URL, with its `detail` when it says one: chat's part carries it (OpenAI models
    read it; a low-detail image costs 85 tokens, a high one 85 + 170 a tile)."""
    detail = part.get("detail")
    if detail is None:
        return {"url": part["image_url"]}
    if detail not in IMAGE_DETAILS:
        raise InvalidRequest(
            f"{where}.detail: must be one of {', '.join(IMAGE_DETAILS)}",
            param=f"{where}.detail",
            code="invalid_value",
        )
    return {"url": part["image_url"], "detail": detail}


# The string field of each part type `_parts` reads text or a URL from.
_PART_TEXT = {
    "input_text": "text",
    "output_text": "text",
    "text": "text",
    "input_image": "image_url",
    "refusal": "refusal",
}


def _parts(content: list[Any], where: str, *, role: str) -> str | list[dict[str, Any]]:
    """Content parts as the pipeline's: text (joined, when that is all), images and PDFs."""
    parts: list[dict[str, Any]] = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": _image(part, f"{where}.{n}")})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_file":
            in_user_turns_or_tool_results(role, f"{where}.{n}")
            parts.append(_input_file(part, f"{where}.{n}"))
        elif isinstance(kind, str) and kind in _PART_TEXT:  # a served part, its field of another type: named
            field = f"{where}.{n}.{_PART_TEXT[kind]}"
            raise InvalidRequest(f"{field}: expected a string", code="invalid_type", param=field)
        else:
            raise InvalidRequest(
                f"{where}.{n}: parts of type {shown(kind)} are not supported here (input_text, output_text, "
                "input_image with an image_url and input_file with a PDF's file_data are)",
                param=f"{where}.{n}",
            )
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _function_call(item: dict[str, Any], where: str) -> ToolCall:
    """A function or custom tool call, by the tool's name in the pipeline (a namespace's tool's prefixed,
    a custom tool's text its one argument)."""
    kind, call_id, name = item["type"], item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}: a {kind} needs its call_id and name", param=where)
    if kind == "custom_tool_call":
        text = item.get("input")
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}.input: a string", param=f"{where}.input")
        arguments = custom_arguments(text)
    else:
        arguments = item.get("arguments", "{}")
        if not isinstance(arguments, str):
            raise InvalidRequest(f"{where}.arguments: a JSON string", param=f"{where}.arguments")
    name = flat_name(item.get("namespace"), name)
    return tool_call(call_id, name, arguments, param=where)


def _output(output: Any, where: str) -> str | list[dict[str, Any]]:
    """A function call's output: a string, or parts (text and images: a tool may return a screenshot)."""
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise InvalidRequest(f"{where}.output: a string or a list of parts", param=f"{where}.output")
    return _parts(output, f"{where}.output", role="tool")


def _input_file(part: dict[str, Any], at: str) -> dict[str, Any]:
    """An `input_file` with a PDF's `file_data` (and its `filename`); a file by id or URL is not served,
    nor a `detail` other than auto (the pipeline's part, chat's, has none)."""
    for field in ("file_id", "file_url"):
        if part.get(field) is not None:
            if field == "file_id":
                raise file_id_not_served(f"{at}.file_id")
            raise InvalidRequest(
                f"{at}.file_url: files by URL are not served: send the PDF itself as file_data, a base64 "
                "data URL",
                code="unsupported_parameter",
                param=f"{at}.file_url",
            )
    if part.get("detail", "auto") != "auto":
        raise InvalidRequest(
            f"{at}.detail: only auto is served for a document",
            code="unsupported_parameter",
            param=f"{at}.detail",
        )
    return from_data_url(part.get("file_data"), part.get("filename"), at)


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """`text.format` as chat completions' `response_format` (whose json_schema nests the schema)."""
    fmt = (text or {}).get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema" and isinstance(fmt.get("schema"), dict):
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidRequest(
        'text.format: must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", '
        '"name": ..., "schema": {...}}',
        param="text.format",
    )
