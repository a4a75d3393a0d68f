"""A model's reasoning as the pipeline carries it: what the client asked of it (an effort, a budget,
adaptive; `Reasoning`) and the thinking blocks a model returned and needs back within a tool loop
(`ThinkingBlock`). `events.tasks` re-exports these names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from switchyard.common.events.base import MAX_TOKENS

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
# Anthropic's smallest thinking budget, and the budget an effort stands for (low to high: the steps of
# Gemini's OpenAI-compatible endpoint; xhigh and max: the largest budgets Claude's 64K-output models take).
# "none" asks for no reasoning, said out loud (GPT-5.1 and later reason unless told so; a model that must
# reason takes its lowest effort); "minimal" asks for no thinking where a model cannot think a little.
MIN_THINKING_BUDGET = 1024
EFFORT_BUDGETS: dict[str, int] = {
    "none": 0,
    "minimal": 0,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 63999,
}
DisplayedThinking = Literal["summarized", "omitted"]


class ThinkingBlock(BaseModel):
    """A model's reasoning before its answer, as Anthropic returns it and needs it back within a tool loop:
    `thinking` text with its `signature`, or `redacted_thinking` (reasoning its safety systems encrypted)
    with `data`. The signature is Anthropic's: only Anthropic models are sent these blocks back."""

    type: Literal["thinking", "redacted_thinking"] = "thinking"
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None

    def complete(self) -> bool:
        """Whole, as a model returns it: text and signature, or a redacted block's data."""
        if self.type == "redacted_thinking":
            return bool(self.data)
        return self.thinking is not None and self.signature is not None


class Reasoning(BaseModel):
    """What the client asked of the model's thinking: an effort (OpenAI's `reasoning_effort`, Anthropic's
    `output_config.effort`), a token budget (Anthropic's `thinking.budget_tokens`), or `adaptive`: the
    model decides whether and how much to think, at the effort if one was given (Anthropic's
    `thinking.type: adaptive`). `display` is Anthropic's choice of thinking shown or omitted (signature
    only). Each adapter sends its provider's form of it, and only to models the policy gives the
    `reasoning` capability; the others answer without."""

    model_config = ConfigDict(frozen=True)

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = Field(default=None, ge=MIN_THINKING_BUDGET, le=MAX_TOKENS)
    adaptive: bool = False
    display: DisplayedThinking | None = None

    def budget(self) -> int:
        """Thinking tokens: the budget asked for, or the effort's (0 for "none" and "minimal")."""
        if self.budget_tokens is not None:
            return self.budget_tokens
        return EFFORT_BUDGETS[self.effort or "medium"]

    def level(self) -> ReasoningEffort:
        """The effort asked for, or the one nearest the budget asked for."""
        if self.effort is not None:
            return self.effort
        budget = self.budget()
        if budget < 4096:
            return "low"
        if budget < 16384:
            return "medium"
        return "high" if budget < 32768 else "xhigh" if budget < 63999 else "max"

    def thinks(self) -> bool:
        """Whether it asks for any thinking at all ("none" and "minimal" do not)."""
        return self.budget() > 0
