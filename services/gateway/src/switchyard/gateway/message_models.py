"""The Anthropic Messages API's request (`POST /v1/messages`, and `/v1/messages/count_tokens`'s) as the
face validates it: its turns, content blocks, tools, thinking and output settings (read into the
pipeline's request by `messages`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchyard.common.events import Reasoning
from switchyard.common.events.tasks import MIN_THINKING_BUDGET, DisplayedThinking
from switchyard.gateway.errors import InvalidRequest

TOOL_NAME = r"^[a-zA-Z0-9_-]{1,128}$"


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    """A turn; `system` is a mid-conversation system message (`message_turns.check_system_turns`)."""

    role: Literal["user", "assistant", "system"]
    content: str | list[TextBlock]


class Tool(BaseModel):
    """A client tool (`custom`); Anthropic's built-in tools are not served (`refuse_builtin_tools`)."""

    name: str = Field(pattern=TOOL_NAME)  # Anthropic's pattern, and its words when it is not matched
    description: str | None = None
    input_schema: dict[str, Any]  # of `type: "object"` (`messages.pipeline_tools`)
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(BaseModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = Field(default=None, strict=True)


class Thinking(BaseModel):
    """Claude's thinking: `enabled` with a budget (at least 1,024 tokens, below `max_tokens`); `adaptive`
    (Claude 4.6 and later: the model decides whether and how much to think, at `output_config.effort`);
    `disabled`; or `between_tools` (thinking off, the model's progress notes between tool calls returned
    as thinking blocks: served as `disabled`, which a Claude model that takes it gets as `between_tools`).
    `display`: thinking shown (`summarized`) or left out with only its signature (`omitted`)."""

    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = Field(default=None, ge=MIN_THINKING_BUDGET, strict=True)
    display: DisplayedThinking | None = None


class OutputFormat(BaseModel):
    """Structured outputs: the answer is one JSON value matching `schema`."""

    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    """`effort`: how much the model spends on its answer, thinking included (with thinking off it is not
    passed on: the pipeline's effort is a reasoning effort; with no `thinking` at all it is the task's
    effort); `format`: structured outputs."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class CountTokensRequest(BaseModel):
    """`POST /v1/messages/count_tokens`: what a message's prompt is made of (Anthropic's fields; others,
    such as `thinking`, are ignored: they do not change the count)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1, le=1_000_000, strict=True)
    stream: bool = Field(default=False, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=1, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    stop_sequences: list[str] | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None

    def reasoning(self) -> Reasoning | None:
        """The thinking asked for in the pipeline's terms (400 when it cannot be what Anthropic takes)."""
        thinking = self.thinking
        effort = self.output_config.effort if self.output_config else None
        if thinking is None:
            # An effort alone: Claude 5 thinks by default, at this effort (its depth and its cost); other
            # models take it as their reasoning effort.
            return Reasoning(effort=effort) if effort else None
        if thinking.type in ("disabled", "between_tools"):
            # No thinking, said out loud: models that think by default (Claude 5, GPT-5.1 and later) are
            # told so, each in its own terms.
            return Reasoning(effort="none")
        budget = thinking.budget_tokens
        if thinking.type == "adaptive":
            if budget is not None:
                raise InvalidRequest(
                    "thinking.budget_tokens: only `enabled` thinking takes a budget; adaptive thinking is "
                    "steered by `output_config.effort`",
                    param="thinking.budget_tokens",
                )
            return Reasoning(adaptive=True, effort=effort, display=thinking.display)
        if budget is None:
            raise InvalidRequest("thinking.budget_tokens: Field required", param="thinking.budget_tokens")
        if budget >= self.max_tokens:
            raise InvalidRequest(
                "`max_tokens` must be greater than `thinking.budget_tokens`", param="thinking.budget_tokens"
            )
        return Reasoning(budget_tokens=budget, effort=effort, display=thinking.display)

    def response_format(self) -> dict[str, Any] | None:
        """Structured outputs as the pipeline's JSON-schema answer format (the router then picks a model
        with `json_mode`, or a Claude model the client named is told the schema)."""
        output = self.output_config.format if self.output_config else None
        if output is None:
            return None
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output.json_schema, "strict": True},
        }
