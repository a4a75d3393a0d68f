"""A `generateContent` request's conversation in the pipeline's terms: the system instruction and contents
as chat messages (model turns' thought parts left out, consecutive model contents one turn), function
calls and responses paired up, images as `image_url` parts, inline PDFs as `file` parts, function
declarations and the calling config as tools and a tool choice."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from switchyard.common.documents import PDF
from switchyard.common.events import ChatMessage, FunctionCall, FunctionSpec, ToolCall, ToolSpec
from switchyard.gateway.bounds import json_text
from switchyard.gateway.documents import in_user_turns_or_tool_results, pdf_part
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.gemini.schema import json_schema
from switchyard.gateway.gemini.wire import Content, GenerateContentRequest, Part, ResponseMedia

# a model turn's function calls not yet answered: by function name, their ids in the order of the calls.
# Ordered dicts: an id is looked up and taken off in constant time, and the first (the call a response
# without an id answers) found in constant time (a dict's first key, after many taken off the front, is
# found by skipping them: quadratic for a turn of many calls)
Calls = dict[str, OrderedDict[str, None]]


def unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {why}", code="unsupported_parameter", param=param)


def prompt(
    parsed: GenerateContentRequest,
) -> tuple[list[ChatMessage], list[ToolSpec] | None, str | dict[str, Any] | None]:
    messages: list[ChatMessage] = []
    if parsed.system_instruction is not None:
        system = _user_parts(parsed.system_instruction, "systemInstruction", images=False)
        if system:
            messages.append(ChatMessage(role="system", content=system))
    calls: Calls = {}  # the last model turn's unanswered calls
    contents = parsed.contents
    for i, content in enumerate(contents):
        where = f"contents.{i}"
        if content.role == "model":
            if i > 0 and contents[i - 1].role == "model":
                continue  # read with the first of its run
            _check_answered(calls, where)
            end = i + 1
            while end < len(contents) and contents[end].role == "model":
                end += 1
            turn, calls = _model_turn(contents[i:end], i)  # the run only: not a copy of all the rest
            if turn is not None:
                messages.append(turn)
            continue
        messages += _function_responses(content, calls, where)
        _check_answered(calls, where)
        text = _user_parts(content, where, images=True)
        if text or not any(p.function_response for p in content.parts):
            if not text:
                raise InvalidRequest(f"{where}.parts: a content needs at least one part", param=where)
            messages.append(ChatMessage(role="user", content=text))
    if not messages or all(m.role == "system" for m in messages):
        raise InvalidRequest(
            "contents: nothing to answer: the contents hold no text, image, function call or function "
            "response (thoughts and empty texts are left out)",
            param="contents",
        )
    tools, choice = _tools(parsed)
    return messages, tools, choice


def _model_turn(run: list[Content], i: int) -> tuple[ChatMessage | None, Calls]:
    """A model turn: its text (thoughts left out: a thought summary is the model's, not the
    conversation's; a PDF or an image in it is a 400, media being read in user turns only) and its
    function calls, each with its id (the client's, or `call_<turn>_<n>`). A run of model contents (`run`,
    from `contents.<i>`) is one turn: Google's SDKs keep a streamed answer in a chat's history as one model
    content per chunk, the last one an empty text."""
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    calls: Calls = {}
    parts = [(f"contents.{i + n}.parts.{k}", p) for n, c in enumerate(run) for k, p in enumerate(c.parts)]
    for at, part in parts:
        if part.thought:
            continue
        if part.function_call is not None:
            call = part.function_call
            ident = call.id or f"call_{i}_{len(tool_calls)}"
            arguments = json_text(call.args or {}, param=at)
            tool_calls.append(ToolCall(id=ident, function=FunctionCall(name=call.name, arguments=arguments)))
            calls.setdefault(call.name, OrderedDict())[ident] = None
        elif part.text is not None:
            texts.append(part.text)
        elif part.executable_code is not None or part.code_execution_result is not None:
            raise unsupported(at, "code execution is not served")
        elif part.inline_data is not None and part.inline_data.mime_type == PDF:
            in_user_turns_or_tool_results("model", f"{at}.inlineData")
        elif part.inline_data is not None or part.file_data is not None:
            # an image the model made (Gemini's image models): no model behind this gateway takes images
            # in its own turns, and dropping it would have the next answer miss it without a word
            field = "inlineData" if part.inline_data is not None else "fileData"
            why = "media in a model turn cannot be sent on: images go in user turns"
            raise unsupported(f"{at}.{field}", why)
    text = "".join(texts)
    if not text and not tool_calls:
        return None, calls
    message = ChatMessage(role="assistant", content=text or None, tool_calls=tool_calls or None)
    return message, calls


def _function_responses(content: Content, calls: Calls, where: str) -> list[ChatMessage]:
    """A turn's function responses as tool messages, each answering a call of the model turn before it:
    by its id, or, without one, the first call of its name not yet answered. A response's `parts` (Gemini
    3's multimodal function responses: images and PDFs) follow its text in the tool message."""
    out: list[ChatMessage] = []
    for k, part in enumerate(content.parts):
        answer = part.function_response
        if answer is None:
            continue
        pending = calls.get(answer.name, OrderedDict())
        ident = answer.id if answer.id is not None else next(iter(pending), None)
        if ident is None or ident not in pending:
            raise InvalidRequest(
                f"{where}.parts.{k}.functionResponse ({answer.name}) answers no function call of the model "
                "turn just before it: a function response turn must come right after its function call turn",
                param=f"{where}.parts.{k}",
            )
        del pending[ident]
        text, failed = _response_text(answer.response, f"{where}.parts.{k}")
        at = f"{where}.parts.{k}.functionResponse.parts"
        media = [_media(p, f"{at}.{n}") for n, p in enumerate(answer.parts or [])]
        said: str | list[dict[str, Any]] = [{"type": "text", "text": text}, *media] if media else text
        out.append(
            ChatMessage(
                role="tool", tool_call_id=ident, content=said, **({"is_error": True} if failed else {})
            )
        )
    return out


def _check_answered(calls: Calls, where: str) -> None:
    """A model turn's function calls must be answered in the turn after it (OpenAI's API refuses a
    conversation that leaves one unanswered, so the router's pick would decide whether it ran)."""
    missing = [ident for ids in calls.values() for ident in ids]
    if missing:
        raise InvalidRequest(
            f"{where}: the function calls of the model turn before it have no functionResponse parts: "
            f"{', '.join(missing)}. Each function call must be answered in the next content",
            param=where,
        )
    calls.clear()


def _response_text(response: dict[str, Any] | None, at: str) -> tuple[str, bool]:
    """A function response as the tool message's text: its `output` when that is all it holds (the Gemini
    CLI's shape and Google's documented one), its `error` as a failed call, else the object as JSON."""
    response = response or {}
    if set(response) == {"output"} and isinstance(response["output"], str):
        return response["output"], False
    if set(response) == {"error"}:
        error = response["error"]
        return (error if isinstance(error, str) else json_text(error, param=at)), True
    return json_text(response, param=at), False


def _user_parts(content: Content, where: str, *, images: bool) -> str | list[dict[str, Any]]:
    """A turn's text and images (function responses are read by `_function_responses`): one text part as
    a string, else OpenAI-style parts."""
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(content.parts):
        at = f"{where}.parts.{k}"
        if part.function_response is not None or part.thought:
            continue
        if part.function_call is not None:
            raise InvalidRequest(f"{at}: a functionCall belongs to a model turn", param=at)
        if part.text is not None:
            parts.append({"type": "text", "text": part.text})
        elif part.inline_data is not None or part.file_data is not None:
            if not images:
                raise unsupported(at, "the system instruction takes text only")
            parts.append(_media(part, at))
        else:
            raise unsupported(
                at,
                "parts of text, images (inlineData, fileData), PDFs (inlineData) and function responses are "
                "served",
            )
    if all(p["type"] == "text" for p in parts) and len(parts) <= 1:
        return parts[0]["text"] if parts else ""
    return parts


def _media(part: Part | ResponseMedia, at: str) -> dict[str, Any]:
    """An image part (of a turn or a function response) as an `image_url` part: inline bytes as a data URL,
    or an http(s) `fileUri`; an inline PDF as a `file` part."""
    if part.inline_data is not None:
        blob = part.inline_data
        if blob.mime_type.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": f"data:{blob.mime_type};base64,{blob.data}"}}
        if blob.mime_type == PDF:
            return pdf_part(media_type=PDF, data=blob.data, filename=None, at=f"{at}.inlineData")
        kind = blob.mime_type
    else:
        assert part.file_data is not None
        data = part.file_data
        kind = data.mime_type or "unknown"
        if data.file_uri.startswith(("https://", "http://")) and kind.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": data.file_uri}}
        if not data.file_uri.startswith(("https://", "http://")):
            raise unsupported(at, "fileData takes an http(s) URL: Google's Files API is not served")
    raise unsupported(at, f"inputs of type {kind[:80]} are not served (text, images and inline PDFs are)")


def _tools(parsed: GenerateContentRequest) -> tuple[list[ToolSpec] | None, str | dict[str, Any] | None]:
    """Function declarations as tools, and `toolConfig.functionCallingConfig` as the tool choice: AUTO and
    VALIDATED choose freely, ANY must call one (of `allowedFunctionNames`, when given), NONE calls none."""
    declarations = [d for tool in parsed.tools or [] for d in tool.function_declarations or []]
    config = parsed.tool_config.function_calling_config if parsed.tool_config else None
    mode = (config.mode if config else None) or "AUTO"
    allowed = config.allowed_function_names if config else None
    if mode == "ANY" and allowed:
        unknown = sorted(set(allowed) - {d.name for d in declarations})
        if unknown:
            raise InvalidRequest(
                f"toolConfig.functionCallingConfig.allowedFunctionNames: {unknown[:5]}"
                f"{' and more' if len(unknown) > 5 else ''} are not declared",
                param="toolConfig.functionCallingConfig.allowedFunctionNames",
            )
        declarations = [d for d in declarations if d.name in allowed]
    if not declarations:
        return None, "none" if mode == "NONE" else None
    tools = [
        ToolSpec(
            function=FunctionSpec(
                name=d.name,
                description=d.description,
                parameters=json_schema(d.parameters_json_schema or d.parameters, param="tools")
                if (d.parameters_json_schema or d.parameters)
                else None,
            )
        )
        for d in declarations
    ]
    if mode == "NONE":
        return tools, "none"
    if mode == "ANY":
        if len(tools) == 1:
            return tools, {"type": "function", "function": {"name": tools[0].function.name}}
        return tools, "required"
    return tools, None
