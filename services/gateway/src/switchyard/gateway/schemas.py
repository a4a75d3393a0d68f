"""The OpenAI chat-completions request as the gateway accepts it, and the response shapes it returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from switchyard.common.events import (
    ChatMessage,
    Choice,
    FunctionCall,
    Reasoning,
    ThinkingBlock,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    TopLogprob,
    Usage,
)
from switchyard.common.events.logprobs import MAX_TOP_LOGPROBS
from switchyard.common.events.tasks import MAX_CHOICES, ReasoningEffort
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge, shown
from switchyard.gateway.responses_tools import narrowed

RESPONSE_FORMATS = ("text", "json_object", "json_schema")
COMPLETION_ID = "chatcmpl-"  # a completion's id is this and its task's id


class StreamOptions(BaseModel):
    include_usage: bool = Field(default=False, strict=True)


# OpenAI request fields that ask for something Switchyard does not deliver: a request that sets one to ask
# for it is refused (400 `unsupported_parameter`) rather than answered without it. The value is when the
# field asks (its off values, which clients send by default, pass) and what the refusal says.
Unsupported = dict[str, tuple[Callable[[Any], bool], str]]
UNSUPPORTED: Unsupported = {
    "logit_bias": (lambda v: bool(v), "`logit_bias` is not passed to providers"),
    "functions": (lambda v: bool(v), "the legacy `functions` field is not supported; send `tools`"),
    "function_call": (
        lambda v: v not in (None, "none"),
        "the legacy `function_call` field is not supported; send `tool_choice`",
    ),
    "modalities": (lambda v: v not in (None, ["text"]), "only text output is supported"),
    "audio": (lambda v: v is not None, "audio output is not supported"),
    # OpenAI's search models search the web when the field is there, `{}` too: no model here does
    "web_search_options": (lambda v: v is not None, "web search is not supported: no model here searches"),
}


def check_prompt_size(messages: list[ChatMessage], max_prompt_chars: int) -> None:
    """413 `prompt_too_large` for a prompt whose text is longer than the gateway takes."""
    chars = sum(len(m.text()) for m in messages)
    if chars > max_prompt_chars:
        raise RequestTooLarge(
            f"The prompt has {chars} characters; the limit is {max_prompt_chars} "
            "(SWITCHYARD_MAX_PROMPT_CHARS)",
            code="prompt_too_large",
        )


def refuse_unsupported(raw: dict[str, Any], table: Unsupported = UNSUPPORTED) -> None:
    """Raises 400 `unsupported_parameter` for the first field of a request body that asks for what is not
    delivered."""
    for name, (asks, why) in table.items():
        if name in raw and asks(raw[name]):
            raise InvalidRequest(f"{name}: {why}", code="unsupported_parameter", param=name)


def refuse_unknown(raw: dict[str, Any], known: frozenset[str]) -> None:
    """400 `unknown_parameter` (OpenAI's code, its Responses API's words) for the first field of a body not
    in `known`: where a misspelt field (`max_token`) must not pass as if it was not sent."""
    for name in raw:
        if name not in known:
            raise InvalidRequest(
                f"Unknown parameter: {shown(name)}", code="unknown_parameter", param=name[:80]
            )


class ChatCompletionRequest(BaseModel):
    # Scalars are strict, as OpenAI's are: `"stream": "yes"` or `"max_tokens": "5"` is a 400 `invalid_type`,
    # not read as true or 5 (an integer is still a number where a float is asked for).
    # Other fields OpenAI accepts that change nothing Switchyard returns (`store`, `metadata`,
    # `service_tier`, `prediction`, ...) are accepted and ignored, as OpenAI-compatible servers do.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, strict=True)  # several answers, from one call
    stop: str | list[str] | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None
    tools: list[ToolSpec] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    seed: int | None = Field(default=None, strict=True)
    # grouping requests for the provider's prompt cache: sent to OpenAI scoped to the tenant (ChatRequest)
    prompt_cache_key: str | None = Field(default=None, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    # OpenAI's reasoning effort ("none": no reasoning, said out loud: GPT-5.1 and later reason unless told
    # so); sent to models with the `reasoning` capability.
    reasoning_effort: ReasoningEffort | None = None
    # The answer's token log probabilities, with `top_logprobs` alternatives per token (only with
    # `logprobs: true`, see `check_logprobs`); sent to models with the `logprobs` capability.
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS, strict=True)
    # The Responses API's: `auto` lets the router drop the oldest turns to fit a model's context window
    truncation: Literal["auto", "disabled"] | None = None
    _thinking: Reasoning | None = PrivateAttr(default=None)  # the Anthropic face's thinking budget
    # Where the face's body has each tool's definition, by its name: the path and the schema's field name
    # (`tool_place`), for an error about a tool to name it as the client wrote it.
    _tool_places: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    # Where the face's body has the answer format's schema (`format_place`), as `_tool_places` say a tool's.
    _format_place: tuple[str, str] = PrivateAttr(default=("response_format.json_schema", "schema"))

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if isinstance(v, str):
            return [v]
        return v

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return None
        if v.get("type") not in RESPONSE_FORMATS:
            raise ValueError(f"type must be one of {', '.join(RESPONSE_FORMATS)}")
        if v["type"] == "json_schema":
            spec = v.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
                raise ValueError("json_schema must be an object with a `schema` object")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _known_choice(cls, v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        function = v.get("function") if isinstance(v, dict) else None
        named = isinstance(function, dict) and isinstance(function.get("name"), str)
        if isinstance(v, dict) and not (
            (v.get("type") == "function" and named)
            or v.get("type") == "allowed_tools"  # read by `narrow_allowed_tools`
        ):
            raise ValueError(
                'must be "none", "auto", "required", {"type": "function", "function": {"name"}} or '
                '{"type": "allowed_tools", "allowed_tools": {"mode", "tools"}}'
            )
        return v

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def reasoning(self) -> Reasoning | None:
        if self._thinking is not None:
            return self._thinking
        if self.reasoning_effort is None:
            return None
        return Reasoning(effort=self.reasoning_effort)

    def with_thinking(self, reasoning: Reasoning | None) -> ChatCompletionRequest:
        self._thinking = reasoning
        return self

    def with_tool_places(self, places: dict[str, tuple[str, str]]) -> ChatCompletionRequest:
        self._tool_places = places
        return self

    def with_format_place(self, prefix: str, schema: str) -> ChatCompletionRequest:
        self._format_place = (prefix, schema)
        return self

    def tool_place(self, index: int) -> tuple[str, str]:
        """Where the face's body has the definition of the tool at `index`, and the name of its schema's
        field there: `("tools.0.function", "parameters")` on chat completions, `("tools.0",
        "input_schema")` on Messages, `("tools.0.functionDeclarations.1", "parameters")` on Gemini."""
        tools = self.tools or []
        if index == len(tools) and self.json_schema_format() is not None:
            return self._format_place  # the answer format, screened after the tools (`guardrails.tools`)
        name = tools[index].function.name if 0 <= index < len(tools) else ""
        return self._tool_places.get(name) or (f"tools.{index}.function", "parameters")

    def json_schema_format(self) -> dict[str, Any] | None:
        """The `json_schema` of a JSON-schema answer format (its name, description and schema)."""
        fmt = self.response_format or {}
        spec = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
        return spec if isinstance(spec, dict) else None


MAX_CALL_FIELD = 256  # a tool call's id and name, as the pipeline's `ToolCall` holds them


def tool_call(call_id: str, name: str, arguments: str, *, param: str) -> ToolCall:
    """A tool call of an earlier turn, as a face read it: an id or a name the pipeline cannot hold is the
    client's 400 naming where it is (it was a ValidationError out of the parser: a 500)."""
    for field, value in (("id", call_id), ("name", name)):
        if not 0 < len(value) <= MAX_CALL_FIELD:
            raise InvalidRequest(
                f"{param}: a tool call's {field} must be 1 to {MAX_CALL_FIELD} characters "
                f"(it has {len(value)})",
                param=param,
                code="string_above_max_length" if value else "invalid_value",
            )
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


def narrow_allowed_tools(parsed: ChatCompletionRequest) -> None:
    """Chat's `{"type": "allowed_tools", "allowed_tools": {"mode", "tools"}}` choice: the tools offered
    narrowed to the function tools it names, with `mode` (`auto` or `required`) as the choice. What the
    model may call is the same as at OpenAI, which keeps the whole list in the prompt (for its cache);
    the Responses face reads its flat form with the same check (`responses_tools.narrowed`)."""
    choice = parsed.tool_choice
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return
    spec = choice.get("allowed_tools")
    named = spec.get("tools") if isinstance(spec, dict) else None
    names = [_function_name(tool) for tool in named] if isinstance(named, list) else None
    parsed.tools, parsed.tool_choice = narrowed(
        parsed.tools,
        spec.get("mode") if isinstance(spec, dict) else None,
        names,
        param="tool_choice.allowed_tools",
        what="tool_choice.allowed_tools",
        shape='[{"type": "function", "function": {"name": ...}}, ...]',
    )


def _function_name(tool: Any) -> Any:
    """A chat tool entry's function name; None for one that is no function tool."""
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    return function.get("name") if isinstance(function, dict) else None


def check_logprobs(parsed: ChatCompletionRequest) -> None:
    """`top_logprobs` without `logprobs: true` is a 400, as OpenAI refuses it (the alternatives are given
    only beside the chosen tokens' log probabilities)."""
    if parsed.top_logprobs is not None and parsed.logprobs is not True:
        raise InvalidRequest(
            "top_logprobs needs `logprobs: true`", param="top_logprobs", code="invalid_value"
        )


def check_tool_turns(parsed: ChatCompletionRequest, *, anthropic: bool = False) -> None:
    """What OpenAI refuses with 400 rather than sends on: a `tool` turn that answers no tool call of the
    assistant turn before it (after that turn's other results), and a `tool_choice` that forces a tool
    the request does not offer. Without this they were routed as "needs tools" and failed far later."""
    offered = {t.function.name for t in parsed.tools or []}
    choice = parsed.tool_choice
    if choice == "required" and not offered:
        raise InvalidRequest(
            'tool_choice "required" needs `tools`', param="tool_choice", code="invalid_value"
        )
    if isinstance(choice, dict) and choice["function"]["name"] not in offered:
        name = choice["function"]["name"]
        raise InvalidRequest(
            f"tool_choice names the function {shown(name)}, which is not in `tools`",
            param="tool_choice",
            code="invalid_value",
        )
    answerable: set[str] = set()  # ids of the calls the latest assistant turn made
    for n, message in enumerate(parsed.messages):
        if message.role == "tool":
            if message.tool_call_id not in answerable and anthropic:  # its messages are not ours one to one
                raise InvalidRequest(
                    "a tool_result block must answer a tool_use block of the assistant message just before "
                    f"it; tool_use_id {message.tool_call_id!r} does not",
                    param="messages",
                    code="invalid_value",
                )
            if message.tool_call_id not in answerable:
                raise InvalidRequest(
                    "a message with role 'tool' must answer a tool call of the assistant message before "
                    f"it (its `tool_call_id`); message {n} answers {shown(message.tool_call_id)}",
                    param=f"messages.{n}",
                    code="invalid_value",
                )
            continue
        answerable = {c.id for c in message.tool_calls or []} if message.role == "assistant" else set()


def completion_body(
    *,
    task_id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: Usage,
    tool_calls: list[ToolCall] | None = None,
    reasoning: str | None = None,
    thinking: list[ThinkingBlock] | None = None,
    other_choices: list[Choice] | None = None,
    logprobs: list[TokenLogprob] | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    """`reasoning`: the model's thinking as text, in `message.reasoning_content` (the field DeepSeek, vLLM
    and LiteLLM use; OpenAI's own chat completions return none); `thinking`: its blocks, signatures and
    all, in `message.thinking_blocks` (LiteLLM's), which a client sends back in a tool loop.
    `other_choices`: the second to n-th answers of a request for several (`n`), each with its own
    `logprobs` and `refusal`; `logprobs`: the first answer's tokens, when the request asked for them;
    `refusal`: the model's refusal instead of the first answer (`message.refusal`)."""
    first = {
        "index": 0,
        "message": message_json(content, tool_calls, reasoning, thinking, refusal),
        "finish_reason": finish_reason,
        "logprobs": logprobs_json(logprobs),
    }
    others = [
        {
            "index": i,
            "message": message_json(
                c.content, c.tool_calls, thinking_text(c.thinking), c.thinking, c.refusal
            ),
            "finish_reason": c.finish_reason,
            "logprobs": logprobs_json(c.logprobs),
        }
        for i, c in enumerate(other_choices or [], start=1)
    ]
    return {
        "id": f"{COMPLETION_ID}{task_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [first, *others],
        "usage": usage_json(usage),
    }


def message_json(
    content: str,
    tool_calls: list[ToolCall] | None,
    reasoning: str | None,
    thinking: list[ThinkingBlock] | None,
    refusal: str | None = None,
) -> dict[str, Any]:
    """One choice's `message`; a refusal in its own field with null content, as OpenAI answers one."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal:
        message["content"] = content or None
        message["refusal"] = refusal
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking:
        message["thinking_blocks"] = thinking_json(thinking)
    if tool_calls:
        message["content"] = content or None  # OpenAI sends null content with tool calls
        message["tool_calls"] = [c.model_dump(mode="json") for c in tool_calls]
    return message


def logprobs_json(tokens: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """A choice's (or a streamed chunk's) `logprobs`: its tokens in OpenAI's shape, or None (null) when the
    request did not ask for them or they were withheld."""
    if tokens is None:
        return None
    return {"content": [token_json(t) for t in tokens], "refusal": None}


def token_json(token: TokenLogprob) -> dict[str, Any]:
    """One output token with its alternatives; `bytes` always given, as OpenAI gives it."""
    return {**_top_json(token), "top_logprobs": [_top_json(t) for t in token.top_logprobs]}


def _top_json(token: TopLogprob) -> dict[str, Any]:
    return {"token": token.token, "logprob": token.logprob, "bytes": token.utf8()}


def thinking_text(blocks: list[ThinkingBlock] | None) -> str | None:
    """Thinking blocks as one text (redacted ones have none to show)."""
    texts = [b.thinking for b in blocks or [] if b.thinking]
    return "\n\n".join(texts) or None


def thinking_json(blocks: list[ThinkingBlock] | None) -> list[dict[str, Any]]:
    """Thinking blocks as every face returns them: Anthropic's shape, as the model returned them."""
    return [b.model_dump(exclude_none=True) for b in blocks or []]


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object; `prompt_tokens_details` when the provider read part of the prompt from its
    cache (`cached_tokens`) or wrote part of it there (`cache_write_tokens`, Anthropic's
    `cache_creation_input_tokens`: OpenAI's PromptTokensDetails has the field, openai 3.54.0), both
    within `prompt_tokens`; `completion_tokens_details.reasoning_tokens` when the provider counted the
    reasoning among the completion tokens (absent when it does not say, as Anthropic and the local model
    do not)."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cache_read_tokens or usage.cache_write_tokens:
        details = out["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
        if usage.cache_write_tokens:
            details["cache_write_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def chunk_body(
    *,
    task_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    with_choice: bool = True,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`index`: the choice the delta belongs to (a request for several answers, `n`); `logprobs`: its
    tokens' (`logprobs_json`)."""
    body: dict[str, Any] = {
        "id": f"{COMPLETION_ID}{task_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}]
        if with_choice
        else [],
    }
    if usage is not None:
        body["usage"] = usage
    return body


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AnthropicModelInfo(BaseModel):
    """A model as Anthropic's Models API describes one (the Anthropic SDK's `ModelInfo`)."""

    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str = "1970-01-01T00:00:00Z"  # the epoch: Anthropic's value for an unknown release date
    max_input_tokens: int | None = None  # the context window, when the policy says it


class AnthropicModelList(BaseModel):
    """A page of Anthropic's `GET /v1/models`, paged by `before_id` / `after_id` / `limit`."""

    data: list[AnthropicModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
