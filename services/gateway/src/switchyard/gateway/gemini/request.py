"""Gemini's `GenerateContentRequest` read into the pipeline's chat request (OpenAI's terms), and its
`countTokens` and embedding requests into theirs.

Field names come in Gemini's camelCase or in snake case (the Python SDK sends `thinking_budget` and
`parameters_json_schema` so): both are read. What asks for something Switchyard does not deliver is a 400
naming the field (`unsupported_parameter`): Google's built-in tools, cached contents, log probabilities,
modalities other than text, inputs other than text and images. What changes nothing Switchyard returns is
accepted and ignored: `safetySettings` (no provider is told them), `topK` (the Gemini CLI sends it with
every request; the pipeline carries no top-k, as the Anthropic face's refusal of it says),
`mediaResolution`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from switchyard.common.events import ChatMessage, ChatRequest, FunctionCall, FunctionSpec, ToolCall, ToolSpec
from switchyard.common.events.base import MAX_TOKENS
from switchyard.common.events.tasks import MAX_CHOICES, MIN_THINKING_BUDGET, Reasoning, ReasoningEffort
from switchyard.gateway.completions import json_object
from switchyard.gateway.embeddings import Embeddings
from switchyard.gateway.errors import GEMINI_FIELD, InvalidRequest, RequestTooLarge, invalid_fields
from switchyard.gateway.gemini.schema import json_schema
from switchyard.gateway.schemas import ChatCompletionRequest, check_prompt_size, check_tool_turns

MODELS = "models/"
PROVIDER = "gemini"  # the provider a bare Gemini model name means
LEVELS: dict[str, ReasoningEffort] = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
MAX_EMBEDDINGS = 100  # Gemini's limit on one batchEmbedContents request
M = TypeVar("M", bound=BaseModel)


class _Gemini(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Blob(_Gemini):
    mime_type: str
    data: str = Field(min_length=1)


class FileData(_Gemini):
    mime_type: str | None = None
    file_uri: str = Field(min_length=1)


class CallPart(_Gemini):
    id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    args: dict[str, Any] | None = None


class ResponsePart(_Gemini):
    id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    response: dict[str, Any] | None = None


class Part(_Gemini):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: CallPart | None = None
    function_response: ResponsePart | None = None
    thought: bool | None = Field(default=None, strict=True)
    thought_signature: str | None = None  # a Gemini model's, kept by the executor by call id: not read here
    executable_code: dict[str, Any] | None = None
    code_execution_result: dict[str, Any] | None = None


class Content(_Gemini):
    # "function" and "tool": roles some clients give function responses
    role: Literal["user", "model", "function", "tool"] | None = None
    parts: list[Part] = Field(default_factory=list)


class FunctionDeclaration(_Gemini):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None


class Tool(_Gemini):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    function_declarations: list[FunctionDeclaration] | None = None


class FunctionCallingConfig(_Gemini):
    mode: Literal["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"] | None = None
    allowed_function_names: list[str] | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ToolConfig(_Gemini):
    function_calling_config: FunctionCallingConfig | None = None


class ThinkingConfig(_Gemini):
    include_thoughts: bool | None = Field(default=None, strict=True)
    thinking_budget: int | None = Field(default=None, ge=-1, le=MAX_TOKENS, strict=True)
    thinking_level: Literal["THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"] | None = None

    @field_validator("thinking_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class GenerationConfig(_Gemini):
    stop_sequences: list[str] | None = Field(default=None, max_length=5)
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    candidate_count: int | None = Field(default=None, ge=1, le=MAX_CHOICES, strict=True)
    max_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    top_k: float | None = Field(default=None, ge=0, strict=True)  # accepted, not passed on
    seed: int | None = Field(default=None, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    response_logprobs: bool | None = Field(default=None, strict=True)
    logprobs: int | None = Field(default=None, strict=True)
    response_modalities: list[str] | None = None
    speech_config: dict[str, Any] | None = None
    image_config: dict[str, Any] | None = None
    thinking_config: ThinkingConfig | None = None


class GenerateContentRequest(_Gemini):
    contents: list[Content] = Field(min_length=1)
    system_instruction: Content | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    cached_content: str | None = None

    def config(self) -> GenerationConfig:
        return self.generation_config or GenerationConfig()

    def thoughts(self) -> bool:
        """Whether the answer shows the model's thoughts (`thinkingConfig.includeThoughts`)."""
        thinking = self.config().thinking_config
        return bool(thinking and thinking.include_thoughts)


class CountTokensRequest(_Gemini):
    """`countTokens`: `contents`, or a whole `generateContentRequest` (its system instruction and tools
    counted too)."""

    contents: list[Content] | None = None
    generate_content_request: GenerateContentRequest | None = None


class EmbedContentRequest(_Gemini):
    model: str | None = None  # in a batch: each request's own, which must be the path's
    content: Content
    task_type: str | None = None  # accepted: the pipeline's embedding models take no task type
    title: str | None = None
    output_dimensionality: int | None = Field(default=None, ge=1, strict=True)


class BatchEmbedContentsRequest(_Gemini):
    requests: list[EmbedContentRequest] = Field(min_length=1, max_length=MAX_EMBEDDINGS)


@dataclass(frozen=True)
class Parsed:
    """A chat request read from Gemini's, and whether the client asked to see the model's thoughts."""

    request: ChatCompletionRequest
    thoughts: bool


def model_name(name: str, aliases: dict[str, str]) -> str:
    """The Switchyard model a path's `models/{name}` means: `auto`, a Switchyard id (`provider/model`) or
    an alias as they are; any other bare name is the Gemini provider's model of that name (400 for none,
    `models/` alone)."""
    name = name.removeprefix(MODELS)
    if not name.strip():
        raise InvalidRequest("models/{model}: the path names no model", code="invalid_value", param="model")
    if name == "auto" or "/" in name or name in aliases:
        return name
    return f"{PROVIDER}/{name}"


def parse_request(body: bytes | dict[str, Any], *, model: str, stream: bool, max_prompt_chars: int) -> Parsed:
    """A `generateContent` body as the pipeline's chat request (400 for what is not served, 413 for a
    prompt longer than the gateway takes)."""
    parsed = _validated(body, GenerateContentRequest)
    _refuse(parsed)
    messages, tools, tool_choice = _prompt(parsed)
    check_prompt_size(messages, max_prompt_chars)
    config = parsed.config()
    try:
        request = ChatCompletionRequest(
            model=model,
            messages=messages,
            stream=stream,
            max_tokens=config.max_output_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            n=config.candidate_count or 1,
            stop=config.stop_sequences,
            seed=config.seed,
            presence_penalty=config.presence_penalty,
            frequency_penalty=config.frequency_penalty,
            response_format=_response_format(config),
            tools=tools,
            tool_choice=tool_choice,
        ).with_thinking(_reasoning(config.thinking_config))
    except ValidationError as exc:  # the path's model (its length): the body was checked by `_validated`
        raise invalid_fields(exc.errors()) from exc
    check_tool_turns(request)
    return Parsed(request, thoughts=parsed.thoughts())


def parse_count_request(body: bytes, *, model: str) -> ChatRequest:
    """A `countTokens` body as the chat request whose prompt is counted (no prompt-size limit: a count says
    how large a prompt is, also one `generateContent` would refuse)."""
    parsed = _validated(body, CountTokensRequest)
    whole = parsed.generate_content_request
    if (whole is None) == (parsed.contents is None):
        raise InvalidRequest(
            "countTokens takes either `contents` or `generateContentRequest`", param="contents"
        )
    if whole is None:
        whole = GenerateContentRequest(contents=parsed.contents or [])
    if not whole.contents:
        raise InvalidRequest("contents: at least one content is needed", param="contents")
    _refuse(whole)
    messages, tools, tool_choice = _prompt(whole)
    return ChatRequest(model=model, messages=messages, tools=tools, tool_choice=tool_choice)


def parse_embeddings(
    body: bytes, *, model: str, path_model: str, batch: bool, max_prompt_chars: int
) -> Embeddings:
    """An `embedContent` (one text) or `batchEmbedContents` (up to 100) body as an embeddings request. Each
    content's text parts are one text, joined by new lines; a batch's requests must name the path's model
    and ask for one length of vector."""
    requests = (
        _validated(body, BatchEmbedContentsRequest).requests
        if batch
        else [_validated(body, EmbedContentRequest)]
    )
    texts: list[str] = []
    dimensions: set[int | None] = set()
    for n, one in enumerate(requests):
        where = f"requests.{n}" if batch else "content"
        if one.model is not None and one.model.removeprefix(MODELS) != path_model.removeprefix(MODELS):
            raise InvalidRequest(
                f"{where}.model: every request of a batch must name the model of its path ({path_model})",
                param=f"{where}.model",
            )
        text = "\n".join(_embedded_text(one.content, f"{where}.content" if batch else where))
        if len(text) > max_prompt_chars:
            raise RequestTooLarge(
                f"{where}: the text has {len(text)} characters; the limit is {max_prompt_chars}",
                code="prompt_too_large",
                param=where,
            )
        texts.append(text)
        dimensions.add(one.output_dimensionality)
    if len(dimensions) > 1:
        raise InvalidRequest(
            "requests: every request of a batch must ask for the same outputDimensionality",
            param="requests",
        )
    return Embeddings(model, texts, dimensions.pop(), "float")


def _embedded_text(content: Content, where: str) -> list[str]:
    texts = []
    for k, part in enumerate(content.parts):
        if part.text is None:
            raise InvalidRequest(
                f"{where}.parts.{k}: only text parts can be embedded",
                code="unsupported_parameter",
                param=where,
            )
        texts.append(part.text)
    if not texts or not any(texts):
        raise InvalidRequest(f"{where}: the content has no text to embed", param=where)
    return texts


def _validated(body: bytes | dict[str, Any], model: type[M]) -> M:
    """A body read as `model` (400 `invalid_json` unless a JSON object), a bad field named its Gemini way."""
    raw = body if isinstance(body, dict) else json_object(body)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(exc.errors(), field=GEMINI_FIELD) from exc


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {why}", code="unsupported_parameter", param=param)


def _refuse(parsed: GenerateContentRequest) -> None:
    """400 for the first field that asks for what Switchyard does not deliver."""
    if parsed.cached_content:
        raise _unsupported(
            "cachedContent", "Gemini's cached contents are not served: send the contents with the request"
        )
    for i, tool in enumerate(parsed.tools or []):
        builtin = sorted(k for k, v in (tool.model_extra or {}).items() if v is not None)
        if builtin:
            raise _unsupported(
                f"tools.{i}.{builtin[0]}",
                "Google's built-in tools are not served (Switchyard routes to models of several providers): "
                "give functionDeclarations",
            )
    config = parsed.config()
    if config.response_logprobs or config.logprobs is not None:
        raise _unsupported(
            "generationConfig.responseLogprobs",
            "log probabilities are not served on this face: use POST /v1/chat/completions with `logprobs`",
        )
    if config.response_modalities and any(m.upper() != "TEXT" for m in config.response_modalities):
        raise _unsupported("generationConfig.responseModalities", "only TEXT output is served")
    for name, value in (("speechConfig", config.speech_config), ("imageConfig", config.image_config)):
        if value is not None:
            raise _unsupported(f"generationConfig.{name}", "only text output is served")
    thinking = config.thinking_config
    if thinking and thinking.thinking_budget is not None and thinking.thinking_level is not None:
        raise InvalidRequest(
            "generationConfig.thinkingConfig: give thinkingBudget or thinkingLevel, not both",
            param="generationConfig.thinkingConfig",
        )


def _reasoning(thinking: ThinkingConfig | None) -> Reasoning | None:
    """Gemini's thinking in the pipeline's terms: a budget of 0 is none (said out loud: models that think
    by default are told so), -1 the model's own choice (adaptive), a budget at least Claude's least (1,024),
    a level its effort."""
    if thinking is None:
        return None
    budget, level = thinking.thinking_budget, thinking.thinking_level
    if budget == 0:
        return Reasoning(effort="none")
    if budget == -1:
        return Reasoning(adaptive=True)
    if budget is not None:
        return Reasoning(budget_tokens=max(budget, MIN_THINKING_BUDGET))
    effort = LEVELS.get(level or "")
    return Reasoning(effort=effort) if effort else None


def _response_format(config: GenerationConfig) -> dict[str, Any] | None:
    """`responseMimeType: application/json` with a schema (either field) as a JSON-schema answer format,
    without one as a JSON-object answer. Gemini's schemas need not be OpenAI's strict subset (every
    property required, no other properties), so the format is not strict."""
    mime = (config.response_mime_type or "text/plain").lower()
    schema = config.response_json_schema or config.response_schema
    if mime == "application/json":
        if schema is None:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": json_schema(schema), "strict": False},
        }
    if mime != "text/plain":
        raise _unsupported(
            "generationConfig.responseMimeType", "only text/plain and application/json answers are served"
        )
    if schema is not None:
        raise InvalidRequest(
            "generationConfig.responseSchema needs responseMimeType application/json",
            param="generationConfig.responseMimeType",
        )
    return None


def _prompt(
    parsed: GenerateContentRequest,
) -> tuple[list[ChatMessage], list[ToolSpec] | None, str | dict[str, Any] | None]:
    messages: list[ChatMessage] = []
    if parsed.system_instruction is not None:
        system = _user_parts(parsed.system_instruction, "systemInstruction", images=False)
        if system:
            messages.append(ChatMessage(role="system", content=system))
    calls: dict[str, list[str]] = {}  # the last model turn's unanswered calls: ids by function name
    contents = parsed.contents
    for i, content in enumerate(contents):
        where = f"contents.{i}"
        if content.role == "model":
            if i > 0 and contents[i - 1].role == "model":
                continue  # read with the first of its run
            _check_answered(calls, where)
            run = list(itertools.takewhile(lambda c: c.role == "model", contents[i:]))
            turn, calls = _model_turn(run, i)
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


def _model_turn(run: list[Content], i: int) -> tuple[ChatMessage | None, dict[str, list[str]]]:
    """A model turn: its text (thoughts left out: a thought summary is the model's, not the
    conversation's) and its function calls, each with its id (the client's, or `call_<turn>_<n>`). A run
    of model contents (`run`, from `contents.<i>`) is one turn: Google's SDKs keep a streamed answer in a
    chat's history as one model content per chunk, the last one an empty text."""
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    calls: dict[str, list[str]] = {}
    parts = [(f"contents.{i + n}.parts.{k}", p) for n, c in enumerate(run) for k, p in enumerate(c.parts)]
    for at, part in parts:
        if part.thought:
            continue
        if part.function_call is not None:
            call = part.function_call
            ident = call.id or f"call_{i}_{len(tool_calls)}"
            arguments = orjson.dumps(call.args or {}).decode()
            tool_calls.append(ToolCall(id=ident, function=FunctionCall(name=call.name, arguments=arguments)))
            calls.setdefault(call.name, []).append(ident)
        elif part.text is not None:
            texts.append(part.text)
        elif part.executable_code is not None or part.code_execution_result is not None:
            raise _unsupported(at, "code execution is not served")
    text = "".join(texts)
    if not text and not tool_calls:
        return None, calls
    message = ChatMessage(role="assistant", content=text or None, tool_calls=tool_calls or None)
    return message, calls


def _function_responses(content: Content, calls: dict[str, list[str]], where: str) -> list[ChatMessage]:
    """A turn's function responses as tool messages, each answering a call of the model turn before it:
    by its id, or, without one, the first call of its name not yet answered."""
    out: list[ChatMessage] = []
    for k, part in enumerate(content.parts):
        answer = part.function_response
        if answer is None:
            continue
        pending = calls.get(answer.name, [])
        ident = answer.id if answer.id is not None else (pending[0] if pending else None)
        if ident is None or ident not in pending:
            raise InvalidRequest(
                f"{where}.parts.{k}.functionResponse ({answer.name}) answers no function call of the model "
                "turn just before it: a function response turn must come right after its function call turn",
                param=f"{where}.parts.{k}",
            )
        pending.remove(ident)
        text, failed = _response_text(answer.response)
        out.append(
            ChatMessage(
                role="tool", tool_call_id=ident, content=text, **({"is_error": True} if failed else {})
            )
        )
    return out


def _check_answered(calls: dict[str, list[str]], where: str) -> None:
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


def _response_text(response: dict[str, Any] | None) -> tuple[str, bool]:
    """A function response as the tool message's text: its `output` when that is all it holds (the Gemini
    CLI's shape and Google's documented one), its `error` as a failed call, else the object as JSON."""
    response = response or {}
    if set(response) == {"output"} and isinstance(response["output"], str):
        return response["output"], False
    if set(response) == {"error"}:
        error = response["error"]
        return (error if isinstance(error, str) else orjson.dumps(error).decode()), True
    return orjson.dumps(response).decode(), False


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
                raise _unsupported(at, "the system instruction takes text only")
            parts.append(_image(part, at))
        else:
            raise _unsupported(
                at, "parts of text, images (inlineData, fileData) and function responses are served"
            )
    if all(p["type"] == "text" for p in parts) and len(parts) <= 1:
        return parts[0]["text"] if parts else ""
    return parts


def _image(part: Part, at: str) -> dict[str, Any]:
    """An image part as an `image_url` part: inline bytes as a data URL, or an http(s) `fileUri`."""
    if part.inline_data is not None:
        blob = part.inline_data
        if blob.mime_type.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": f"data:{blob.mime_type};base64,{blob.data}"}}
        kind = blob.mime_type
    else:
        assert part.file_data is not None
        data = part.file_data
        kind = data.mime_type or "unknown"
        if data.file_uri.startswith(("https://", "http://")) and kind.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": data.file_uri}}
        if not data.file_uri.startswith(("https://", "http://")):
            raise _unsupported(at, "fileData takes an http(s) URL: Google's Files API is not served")
    raise _unsupported(at, f"inputs of type {kind} are not served (text and images are)")


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
                f"toolConfig.functionCallingConfig.allowedFunctionNames: {unknown} are not declared",
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
                parameters=json_schema(d.parameters_json_schema or d.parameters)
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
