"""Gemini's `GenerateContentRequest` read into the pipeline's chat request (OpenAI's terms), and its
`countTokens` and embedding requests into theirs.

The bodies as read: `wire`; the conversation and tools: `contents`. What asks for something Switchyard
does not deliver is a 400 naming the field (`unsupported_parameter`): Google's built-in tools, cached
contents, log probabilities, modalities other than text, inputs other than text and images. What changes
nothing Switchyard returns is accepted and ignored: `safetySettings` (no provider is told them), `topK`
(the Gemini CLI sends it with every request; the pipeline carries no top-k, as the Anthropic face's
refusal of it says), `mediaResolution`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from switchyard.common.events import ChatRequest
from switchyard.common.events.tasks import MIN_THINKING_BUDGET, Reasoning, ReasoningEffort
from switchyard.gateway import bounds
from switchyard.gateway.bodies import json_object
from switchyard.gateway.embeddings import Embeddings
from switchyard.gateway.errors import GEMINI_FIELD, InvalidRequest, RequestTooLarge, invalid_fields
from switchyard.gateway.gemini.contents import prompt, unsupported
from switchyard.gateway.gemini.schema import json_schema
from switchyard.gateway.gemini.wire import (
    MAX_EMBEDDINGS,
    BatchEmbedContentsRequest,
    Content,
    CountTokensRequest,
    EmbedContentRequest,
    GenerateContentRequest,
    GenerationConfig,
    ThinkingConfig,
)
from switchyard.gateway.schemas import ChatCompletionRequest, check_prompt_size, check_tool_turns

MODELS = "models/"
PROVIDER = "gemini"  # the provider a bare Gemini model name means
LEVELS: dict[str, ReasoningEffort] = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
M = TypeVar("M", bound=BaseModel)


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


@bounds.reads
def parse_request(body: bytes | dict[str, Any], *, model: str, stream: bool, max_prompt_chars: int) -> Parsed:
    """A `generateContent` body as the pipeline's chat request (400 for what is not served, 413 for a
    prompt longer than the gateway takes)."""
    parsed = _validated(body, GenerateContentRequest)
    _refuse(parsed)
    messages, tools, tool_choice = prompt(parsed)
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
    request.with_tool_places(
        {
            d.name: (
                f"tools.{i}.functionDeclarations.{j}",
                "parametersJsonSchema" if d.parameters_json_schema else "parameters",
            )
            for i, tool in enumerate(parsed.tools or [])
            for j, d in enumerate(tool.function_declarations or [])
        }
    )
    request.with_format_place(
        "generationConfig", "responseJsonSchema" if config.response_json_schema else "responseSchema"
    )
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
        if not parsed.contents:  # the request below takes at least one
            raise InvalidRequest("contents: at least one content is needed", param="contents")
        whole = GenerateContentRequest(contents=parsed.contents)
    _refuse(whole)
    messages, tools, tool_choice = prompt(whole)
    bounds.check_counted_tools(tools)
    return ChatRequest(model=model, messages=messages, tools=tools, tool_choice=tool_choice)


@bounds.reads
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
    """A body read as `model` (400 `invalid_json` unless a JSON object), a bad field named its Gemini way;
    first, how many items it holds (`bounds`)."""
    raw = body if isinstance(body, dict) else json_object(body)
    _check_bounds(raw)
    whole = raw.get("generateContentRequest", raw.get("generate_content_request"))  # countTokens'
    if isinstance(whole, dict):
        _check_bounds(whole)
    requests = raw.get("requests")  # batchEmbedContents'
    if isinstance(requests, list):
        if len(requests) > MAX_EMBEDDINGS:
            raise bounds.too_long("requests", len(requests), MAX_EMBEDDINGS)
        contents = [r.get("content") for r in requests if isinstance(r, dict)]
        bounds.check_conversation(contents, param="requests", parts=("parts",))
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(exc.errors(), field=GEMINI_FIELD) from exc


# a function response's own parts (images, PDFs), in either spelling
RESPONSE_PARTS = (("functionResponse", "parts"), ("function_response", "parts"))


def _check_bounds(raw: dict[str, Any]) -> None:
    """A generateContent (or countTokens, or embedContent) body's contents, system instruction and function
    declarations, counted before they are read (`bounds`)."""
    bounds.check_conversation(raw.get("contents"), param="contents", parts=("parts",), nested=RESPONSE_PARTS)
    content = raw.get("content")  # embedContent's one content
    if isinstance(content, dict):
        bounds.check_blocks(content.get("parts"), param="content.parts")
    system = raw.get("systemInstruction", raw.get("system_instruction"))
    if isinstance(system, dict):
        bounds.check_blocks(system.get("parts"), param="systemInstruction.parts")
    bounds.check_declarations(raw.get("tools"), param="tools")


def _refuse(parsed: GenerateContentRequest) -> None:
    """400 for the first field that asks for what Switchyard does not deliver."""
    if parsed.cached_content:
        raise unsupported(
            "cachedContent", "Gemini's cached contents are not served: send the contents with the request"
        )
    for i, tool in enumerate(parsed.tools or []):
        builtin = sorted(k for k, v in (tool.model_extra or {}).items() if v is not None)
        if builtin:
            raise unsupported(
                f"tools.{i}.{builtin[0]}",
                "Google's built-in tools are not served (Switchyard routes to models of several providers): "
                "give functionDeclarations",
            )
    config = parsed.config()
    if config.response_logprobs or config.logprobs is not None:
        raise unsupported(
            "generationConfig.responseLogprobs",
            "log probabilities are not served on this face: use POST /v1/chat/completions with `logprobs`",
        )
    if config.response_modalities and any(m.upper() != "TEXT" for m in config.response_modalities):
        raise unsupported("generationConfig.responseModalities", "only TEXT output is served")
    for name, value in (("speechConfig", config.speech_config), ("imageConfig", config.image_config)):
        if value is not None:
            raise unsupported(f"generationConfig.{name}", "only text output is served")
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
    field = "generationConfig.response" + ("JsonSchema" if config.response_json_schema else "Schema")
    if mime == "application/json":
        if schema is None:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": json_schema(schema, param=field), "strict": False},
        }
    if mime != "text/plain":
        raise unsupported(
            "generationConfig.responseMimeType", "only text/plain and application/json answers are served"
        )
    if schema is not None:
        raise InvalidRequest(
            "generationConfig.responseSchema needs responseMimeType application/json",
            param="generationConfig.responseMimeType",
        )
    return None
