"""The maximum prompt size of a plan or tenant, in characters and in estimated tokens (the same generous
estimate that admission and budgets use: no tokenizer at the gateway)."""

from __future__ import annotations

from switchyard.common.events import ChatMessage, ToolSpec
from switchyard.gateway.budgets.pricing import message_tokens, tool_specs, tool_tokens
from switchyard.gateway.guardrails.models import Finding, Refusal


class PromptSize:
    """Refuses a prompt over the limits (413 `prompt_too_large`)."""

    name = "prompt_size"

    def __init__(self, *, max_tokens: int | None = None, max_chars: int | None = None) -> None:
        self.max_tokens = max_tokens
        self.max_chars = max_chars

    def on_input(self, messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[Finding]]:
        if self.max_chars is not None:
            chars = sum(len(m.text()) + _call_chars(m) for m in messages)
            if chars > self.max_chars:
                raise self._refusal("max_prompt_chars", f"{chars} characters; the limit is {self.max_chars}")
        if self.max_tokens is not None:
            tokens = message_tokens(messages)
            if tokens > self.max_tokens:
                raise self._refusal(
                    "max_prompt_tokens", f"about {tokens} tokens; the limit is {self.max_tokens}"
                )
        return messages, []

    def on_tools(
        self, tools: list[ToolSpec], messages: list[ChatMessage]
    ) -> tuple[list[ToolSpec], list[Finding]]:
        """The prompt with the tools offered (their JSON, as admission estimates them): over a limit only
        with them is a refusal naming `tools` (the messages alone were checked by `on_input`)."""
        if not tools:
            return tools, []
        if self.max_chars is not None:
            own = sum(len(spec) for spec in tool_specs(tools))
            chars = sum(len(m.text()) + _call_chars(m) for m in messages) + own
            if chars > self.max_chars:
                detail = f"{chars} characters ({own} in its tools and answer format)"
                detail += f"; the limit is {self.max_chars}"
                raise self._refusal("max_prompt_chars", detail, param="tools")
        if self.max_tokens is not None:
            tokens = message_tokens(messages) + tool_tokens(tools)
            if tokens > self.max_tokens:
                detail = f"about {tokens} tokens with its tool definitions; the limit is {self.max_tokens}"
                raise self._refusal("max_prompt_tokens", detail, param="tools")
        return tools, []

    def _refusal(self, rule: str, detail: str, *, param: str | None = None) -> Refusal:
        return Refusal(
            guardrail=self.name,
            rule=rule,
            code="prompt_too_large",
            message=f"The prompt has {detail} for this organisation's plan.",
            status=413,
            param=param,
        )


def _call_chars(message: ChatMessage) -> int:
    """The characters of a message's tool calls (name and arguments), as the token estimate counts them."""
    return sum(len(c.function.name) + len(c.function.arguments) for c in message.tool_calls or ())
