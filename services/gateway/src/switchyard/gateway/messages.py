"""The Anthropic Messages API (`POST /v1/messages`) as a second face of the same pipeline: its request
becomes the pipeline's chat request (answers: `messages_render`). Extended thinking is carried both ways:
the request's thinking (a budget, or adaptive at an effort), the thinking blocks of earlier turns (for an
Anthropic model to be sent back, signatures and all), and the answer's thinking blocks, streamed before
its text."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    FunctionSpec,
    ThinkingBlock,
    ToolCall,
    ToolSpec,
)
from switchyard.gateway import bounds
from switchyard.gateway.bodies import json_object
from switchyard.gateway.documents import anthropic_document, in_user_turns_or_tool_results
from switchyard.gateway.errors import InvalidRequest, invalid_fields
from switchyard.gateway.message_models import CountTokensRequest, InputMessage, MessagesRequest, TextBlock
from switchyard.gateway.message_refusals import UNSUPPORTED, Refusal, refuse_builtin_tools, refuse_thread
from switchyard.gateway.message_turns import check_answered, check_non_empty, check_system_turns
from switchyard.gateway.schemas import (
    ChatCompletionRequest,
    Unsupported,
    check_prompt_size,
    check_tool_turns,
    refuse_unsupported,
    tool_call,
)

M = TypeVar("M", bound=BaseModel)


TOOL_BLOCKS = ("tool_use", "tool_result")
CONTENT_BLOCKS = ("text", "image", "document")
THINKING_BLOCKS = ("thinking", "redacted_thinking")  # an assistant turn's, as the model returned them


def _content(
    content: str | list[TextBlock], *, role: str, at: str, skip: tuple[str, ...] = ()
) -> str | list[dict[str, Any]]:
    """A turn's (or the system prompt's) text, images and documents (a user turn's) in the pipeline's
    terms: one text block as a
    string, or OpenAI-style parts, each keeping its `cache_control` (Anthropic's prompt-cache breakpoint,
    which an Anthropic model is sent). Several text blocks stay several parts, as the client sent them:
    Claude 5.5 checks that what came before a thinking block is unchanged when the block goes back, and
    Claude Code moves its cache breakpoint every turn, so joining unmarked blocks would change a turn it
    had sent as blocks the turn before. `at`: where the blocks are (`messages.N.content`), so that a
    document's error names its block's full path; blocks of a type in `skip` are the caller's (a turn's
    thinking blocks) and keep their place in it."""
    if isinstance(content, str):
        return content
    served = (*CONTENT_BLOCKS, *TOOL_BLOCKS, *skip)
    unsupported = sorted({b.type for b in content if b.type not in served})
    if unsupported:
        named = [kind[:80] for kind in unsupported[:5]]  # a client's, which may be megabytes
        first = next(n for n, b in enumerate(content) if b.type not in served)
        raise InvalidRequest(
            f"content blocks of type {named} are not served here (text, image, document, tool_use, "
            "tool_result, and an assistant turn's thinking and redacted_thinking are)",
            param=f"{at}.{first}.type",
        )
    blocks = [(n, b) for n, b in enumerate(content) if b.type in CONTENT_BLOCKS]
    for n, block in blocks:  # a text block's text is required (Anthropic's 400), not read as ""
        if block.type == "text" and block.text is None:
            raise InvalidRequest(
                f"{at}.{n}.text: Field required", code="missing_field", param=f"{at}.{n}.text"
            )
    if len(blocks) <= 1 and all(b.type == "text" and _extra(b, "cache_control") is None for _, b in blocks):
        return blocks[0][1].text or "" if blocks else ""
    parts: list[dict[str, Any]] = []
    for n, block in blocks:
        if block.type == "document":
            in_user_turns_or_tool_results(role, f"{at}.{n}")
            read = anthropic_document(block.model_extra or {}, f"{at}.{n}")
            parts += [*read[:-1], {**read[-1], **_mark(_extra(block, "cache_control"), f"{at}.{n}")}]
            continue
        part: dict[str, Any] = (
            {"type": "text", "text": block.text or ""}
            if block.type == "text"
            else _image_part(block, f"{at}.{n}.source")
        )
        parts.append({**part, **_mark(_extra(block, "cache_control"), f"{at}.{n}")})
    return parts


def _image_part(block: TextBlock, at: str) -> dict[str, Any]:
    """An Anthropic image block (`source`: base64 with its media type, or a URL) as an `image_url` part.
    `at`: where its source is, which an error names."""
    source = _extra(block, "source")
    if isinstance(source, dict) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and media.startswith("image/") and isinstance(data, str) and data:
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if isinstance(source, dict) and source.get("type") == "url":
        url = source.get("url")
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return {"type": "image_url", "image_url": {"url": url}}
    raise InvalidRequest(
        "an image block needs a `source` of type base64 (with an image/* media_type and data) or url",
        param=at,
    )


def _mark(value: Any, at: str) -> dict[str, Any]:
    """`{"cache_control": ...}` to merge into a part, message or tool: empty when nothing was marked. `at`:
    where the marked block is, which an error names."""
    return {} if value is None else {"cache_control": _cache_control(value, f"{at}.cache_control")}


def _cache_control(value: Any, at: str) -> dict[str, Any]:
    """A breakpoint as it is sent on: the default five-minute cache. A `ttl` of "1h" is accepted and not
    passed on: Anthropic bills one-hour writes at 2x input, a price the policy and the usage events do not
    carry (five-minute writes: `cache_write_per_1k`), so every write Switchyard asks for is one it bills
    right."""
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise InvalidRequest('cache_control must be {"type": "ephemeral"}', param=at)
    ttl = value.get("ttl")
    if ttl is not None and ttl not in ("5m", "1h"):
        raise InvalidRequest('cache_control.ttl must be "5m" or "1h"', param=f"{at}.ttl")
    return {"type": "ephemeral"}


def _extra(block: TextBlock, name: str) -> Any:
    return (block.model_extra or {}).get(name)


def chat_messages(message: InputMessage, at: str) -> list[ChatMessage]:
    """One Anthropic turn as pipeline messages: `tool_use` blocks become the assistant's tool calls, and
    each `tool_result` block a `tool` message answering its call (before any text of the same turn; its
    `is_error`, a failed call, carried for the providers whose APIs say so: Anthropic's, Gemini's); an
    assistant turn's thinking blocks are kept as they came, for an Anthropic model to be sent back. `at`:
    the turn's place (`messages.N`)."""
    where = f"{at}.content"
    if isinstance(message.content, str) or message.role == "system":  # a system message's text (checked)
        return [
            ChatMessage(role=message.role, content=_content(message.content, role=message.role, at=where))
        ]
    # Thinking blocks are the turn's own (read below), not content: elsewhere (a tool result) they are a 400.
    content = _content(message.content, role=message.role, at=where, skip=THINKING_BLOCKS)
    out: list[ChatMessage] = []
    calls: list[ToolCall] = []
    thinking: list[ThinkingBlock] = []
    for n, block in enumerate(message.content):
        here = f"{where}.{n}"
        if block.type in THINKING_BLOCKS:
            if message.role != "assistant":
                raise InvalidRequest(f"{block.type} blocks belong to assistant turns", param=f"{here}.type")
            thinking.append(_thinking_block(block, here))
        elif block.type == "tool_use":
            if not _extra(block, "id") or not _extra(block, "name"):
                raise InvalidRequest("a tool_use block needs an id and a name", param=here)
            call_id, name = _typed(block, "id", str, here), _typed(block, "name", str, here)
            arguments = bounds.json_text(_typed(block, "input", dict, here) or {}, param=f"{here}.input")
            calls.append(tool_call(call_id, name, arguments, param=here))
        elif block.type == "tool_result":
            _typed(block, "content", (str, list), here)
            out.append(
                ChatMessage(
                    role="tool",
                    tool_call_id=_typed(block, "tool_use_id", str, here) or "",
                    content=_result_content(block, here),
                    **_mark(_extra(block, "cache_control"), here),
                    **({"is_error": True} if _extra(block, "is_error") is True else {}),
                )
            )
    if message.role == "assistant":
        return [
            ChatMessage(
                role="assistant", content=content or None, tool_calls=calls or None, thinking=thinking or None
            )
        ]
    if content or not out:
        out.append(ChatMessage(role="user", content=content))
    return out


def _typed(block: TextBlock, name: str, kind: type[Any] | tuple[type[Any], ...], at: str) -> Any:
    """A tool block's field of the JSON type Anthropic types it as (or None), else a 400 naming it."""
    value = _extra(block, name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"{at}.{name}: not a valid type", code="invalid_type", param=f"{at}.{name}")
    return value


def _thinking_block(block: TextBlock, at: str) -> ThinkingBlock:
    """A thinking block sent back: its text and signature (or a redacted block's data), unchanged. `at`:
    where it is, which an error names."""
    try:
        thinking = ThinkingBlock.model_validate({**(block.model_extra or {}), "type": block.type})
    except ValidationError:
        thinking = None
    if thinking is not None and thinking.complete():  # only its own fields, as Anthropic takes them back
        if thinking.type == "redacted_thinking":
            return ThinkingBlock(type="redacted_thinking", data=thinking.data)
        return ThinkingBlock(thinking=thinking.thinking, signature=thinking.signature)
    if block.type == "redacted_thinking":
        raise InvalidRequest("a redacted_thinking block needs its data", param=at)
    raise InvalidRequest("a thinking block needs its thinking and signature, as strings", param=at)


def _result_content(block: TextBlock, at: str) -> str | list[dict[str, Any]]:
    """A tool result's content, read like a turn's (`_content`): its text, or, when it holds images (a
    screenshot, an image file read) or cache marks, parts, which an adapter sends in its provider's terms."""
    content = _extra(block, "content")
    if not isinstance(content, list):
        return "" if content is None else str(content)
    try:
        blocks = [TextBlock.model_validate(p) for p in content]
    except ValidationError as exc:
        raise InvalidRequest(
            "a tool_result's content blocks need a type, and text as a string", param=f"{at}.content"
        ) from exc
    return _content(blocks, role="tool", at=f"{at}.content")


def pipeline_tools(
    parsed: CountTokensRequest,
) -> tuple[list[ToolSpec] | None, str | dict[str, Any] | None, bool | None]:
    """Anthropic's tools and tool_choice in the pipeline's (OpenAI's) terms."""
    if not parsed.tools:
        if (forced := parsed.tool_choice) is not None and forced.type in ("any", "tool"):
            raise InvalidRequest(f"tool_choice {forced.type!r} needs `tools`", param="tool_choice")
        return None, None, None
    for n, tool in enumerate(parsed.tools):
        _check_input_schema(tool.input_schema, f"tools.{n}.input_schema")
    tools = [
        ToolSpec(
            function=FunctionSpec(
                name=t.name,
                description=t.description,
                parameters=t.input_schema,
                **_mark(t.cache_control, f"tools.{n}"),
            )
        )
        for n, t in enumerate(parsed.tools)
    ]
    choice = parsed.tool_choice
    if choice is None:
        return tools, None, None
    if choice.type == "tool" and not choice.name:
        raise InvalidRequest("tool_choice of type tool needs a name", param="tool_choice")
    mapped: str | dict[str, Any] = (
        {"type": "function", "function": {"name": choice.name}}
        if choice.type == "tool"
        else {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    )
    parallel = False if choice.disable_parallel_tool_use else None
    return tools, mapped, parallel


def _check_input_schema(schema: dict[str, Any], at: str) -> None:
    """A tool's `input_schema` is a JSON Schema of an object, its `type` said, as Anthropic requires."""
    kind = schema.get("type")
    if kind != "object":
        missing = kind is None
        raise InvalidRequest(
            f"{at}.type: " + ("Field required" if missing else "Input should be 'object'"),
            param=f"{at}.type",
            code="missing_field" if missing else "invalid_value",
        )


def model_name(model: str, aliases: Collection[str]) -> str:
    """`auto` routes; an alias of the policy (`aliases`) stands for its model, as on the OpenAI face (the
    Anthropic SDK's model list names it, and litellm's `anthropic/<alias>` sends it bare); any other bare
    name (`claude-...`) means the anthropic provider's model."""
    if model == "auto" or "/" in model or model in aliases:
        return model
    return f"anthropic/{model}"


def asked_model(raw: dict[str, Any]) -> str | None:
    """The model as the request names it (`claude-sonnet-5-5`, `auto`), before `model_name`."""
    model = raw.get("model")
    return model if isinstance(model, str) else None


@bounds.reads
def parse_request(
    body: bytes, *, max_prompt_chars: int, aliases: Collection[str] = ()
) -> ChatCompletionRequest:
    return parse_loaded(json_object(body), max_prompt_chars=max_prompt_chars, aliases=aliases)


@bounds.reads
def parse_loaded(
    raw: dict[str, Any], *, max_prompt_chars: int, aliases: Collection[str] = ()
) -> ChatCompletionRequest:
    """A request body already read (`bodies.json_object`) as the pipeline's chat request (`aliases`: the
    policy's, which a bare model name may be)."""
    parsed = _validated(raw, MessagesRequest, unsupported=UNSUPPORTED, refuse=(refuse_thread,))
    messages, tools, tool_choice, parallel = _prompt(parsed)
    check_prompt_size(messages, max_prompt_chars)
    request = ChatCompletionRequest(
        model=model_name(parsed.model, aliases),
        messages=messages,
        stream=parsed.stream,
        max_tokens=parsed.max_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop_sequences,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=parsed.response_format(),
    ).with_thinking(parsed.reasoning())
    request.with_tool_places(
        {t.name: (f"tools.{n}", "input_schema") for n, t in enumerate(parsed.tools or [])}
    )
    request.with_format_place("output_config.format", "schema")
    check_tool_turns(request, anthropic=True)
    return request


def parse_count_request(body: bytes, *, aliases: Collection[str] = ()) -> ChatRequest:
    """A count_tokens body as the chat request its message would become (no prompt-size limit: a count
    says how large a prompt is, also one that `/v1/messages` would refuse as too large)."""
    parsed = _validated(json_object(body), CountTokensRequest, unsupported={})
    messages, tools, tool_choice, parallel = _prompt(parsed)
    request = ChatCompletionRequest(
        model=model_name(parsed.model, aliases),
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
    )
    check_tool_turns(request, anthropic=True)
    bounds.check_counted_tools(tools)
    return ChatRequest(model=request.model, messages=messages, tools=tools, tool_choice=tool_choice)


def _validated(
    raw: dict[str, Any], model: type[M], *, unsupported: Unsupported, refuse: tuple[Refusal, ...] = ()
) -> M:
    bounds.check_conversation(
        raw.get("messages"), param="messages", parts=("content",), nested=(("content",),)
    )
    bounds.check_blocks(raw.get("system"), param="system")
    bounds.check_stop(raw.get("stop_sequences"), param="stop_sequences", limit=bounds.MAX_ITEMS)
    refuse_unsupported(raw, unsupported)
    for check in (refuse_builtin_tools, *refuse):
        check(raw)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(exc.errors()) from exc


ATTRIBUTION = "x-anthropic-billing-header:"


def _without_attribution(system: str | list[TextBlock] | None) -> str | list[TextBlock] | None:
    """The system prompt without Claude Code's attribution line (a block of its own, first:
    `x-anthropic-billing-header: cc_version=2.1.197.721; cc_entrypoint=cli; cch=71fea;`), which tells the
    model nothing and is Anthropic's to read, not a provider's through Switchyard. Its hashes change with
    the session (and, in the interactive CLI, every request): sent on, it would start every prompt
    differently, and no provider's prompt cache would ever hit the prefix after it (Claude Code's
    CLAUDE_CODE_ATTRIBUTION_HEADER=0 leaves it out too)."""
    if not isinstance(system, list):
        return system
    return [b for b in system if not (b.type == "text" and _attribution(b.text or ""))]


def _attribution(text: str) -> bool:
    return text.startswith(ATTRIBUTION) and "\n" not in text.strip()


def _prompt(
    parsed: CountTokensRequest,
) -> tuple[list[ChatMessage], list[ToolSpec] | None, str | dict[str, Any] | None, bool | None]:
    if isinstance(parsed.system, list) and any(b.type != "text" for b in parsed.system):
        raise InvalidRequest("system takes text blocks only", param="system")
    check_non_empty(parsed.messages)
    check_system_turns(parsed.messages)
    system = _without_attribution(parsed.system)
    messages = (
        [ChatMessage(role="system", content=_content(system, role="system", at="system"))] if system else []
    )
    for n, m in enumerate(parsed.messages):
        messages += chat_messages(m, f"messages.{n}")
    check_answered(parsed.messages)
    return messages, *pipeline_tools(parsed)
