"""The maximum prompt size of a plan or tenant, in characters and in estimated tokens (the same generous
estimate that admission and budgets use: no tokenizer at the gateway)."""

from __future__ import annotations

from switchyard.common.events import ChatMessage
from switchyard.gateway.budgets.pricing import message_tokens
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

    def _refusal(self, rule: str, detail: str) -> Refusal:
        return Refusal(
            guardrail=self.name,
            rule=rule,
            code="prompt_too_large",
            message=f"The prompt has {detail} for this organisation's plan.",
            status=413,
        )


def _call_chars(message: ChatMessage) -> int:
    """The characters of a message's tool calls (name and arguments), as the token estimate counts them."""
    return sum(len(c.function.name) + len(c.function.arguments) for c in message.tool_calls or ())
