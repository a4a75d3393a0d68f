"""What a Claude model is sent of a call's reasoning (`thinking`: a budget, adaptive, or off; the effort),
and what else each model takes, read from its name (see `ClaudeThinking`).

Claude's thinking changed with its models. Up to Claude 4.5 it is `enabled` with `budget_tokens`. Claude
4.6 added `adaptive` thinking (the model decides whether and how much to think, steered by
`output_config.effort`) and deprecated budgets; Opus 4.7 and later, and the Mythos and Fable models, refuse
a budget with a 400. Every model that takes adaptive thinking is therefore sent adaptive thinking, whatever
the client asked for: a budget becomes the effort nearest it. The models before 4.6 are sent a budget, an
adaptive request's effort becoming that effort's budget. Names this does not read as a Claude model (a
proxy's own names) are sent a budget, as before adaptive thinking existed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from switchyard.common.events import ChatMessage, ThinkingBlock
from switchyard.common.events.tasks import MIN_THINKING_BUDGET, ReasoningEffort
from switchyard.executor.providers.base import ProviderCall
from switchyard.executor.providers.tools import forced_function

# Claude 5.5's thinking blocks (and Fable's and Mythos's from 5.1) are checked against the model and the
# prefix they were produced on. A router sends one conversation's turns to different models (and a
# fallback does within a turn), so a block from another model, refused with a 400 by default ("The block
# is bound to a different conversation"), is dropped instead: the turn is answered without that earlier
# reasoning rather than not at all. The setting is per request, behind a beta header.
BLOCK_BINDING_BETA = "thinking-binding-controls-2026-08-01"
DROP_MISMATCHED_BLOCKS = {"prefix_mismatch_behavior": "drop_block"}

# claude-<family>-<major>[-<minor>], minor one or two digits (so a snapshot's date is not read as one),
# anywhere in the name: claude-opus-4-6, claude-sonnet-4-5-20250929, claude-sonnet-5,
# claude-mythos-preview, Bedrock's us.anthropic.claude-opus-4-6-v1, Vertex's claude-opus-4-6@20260205.
_NAME = re.compile(r"claude-(opus|sonnet|haiku|mythos|fable)(?:-(\d+)(?:-(\d{1,2}))?)?(?!\d)")


@dataclass(frozen=True)
class ClaudeThinking:
    """The thinking a Claude model takes (adaptive or a budget, and the efforts above `high` it knows), and
    what changed with Claude 5: it thinks unless told not to (`default_on`), and is told so by `off` (5:
    `disabled`; Sonnet 5.5: `between_tools`, its lowest setting, which refuses `disabled`; Opus and Haiku
    5.5, Mythos and Fable cannot be: None); 5 ignored sampling settings and 5.5 refuses them
    (`temperature`, `top_p`: a 400), and 5.5 refuses a forced tool (`tool_choice` `any` or a named tool)."""

    adaptive: bool = False
    xhigh: bool = False
    max: bool = False
    sampling: bool = True
    forced_tools: bool = True
    default_on: bool = False
    off: dict[str, str] | None = None
    preserved: bool = False  # its thinking blocks are bound to the model and to what came before them
    structured: bool = False  # takes a JSON schema for its answer (`output_config.format`): 4.5 and later

    def effort(self, level: ReasoningEffort) -> str:
        """Anthropic's effort for the pipeline's level: those above `high` step down to what the model
        takes; "none" and "minimal" never get here (they ask for no thinking)."""
        if level == "max" and not self.max:
            level = "xhigh"
        if level == "xhigh" and not self.xhigh:
            level = "high"
        return "low" if level in ("none", "minimal") else level


def claude_thinking(model: str) -> ClaudeThinking:
    match = _NAME.search(model)
    if match is None:
        return ClaudeThinking()
    family, major, minor = match.groups()
    version = (int(major or 0), int(minor or 0))
    if family in ("mythos", "fable"):  # thinking always on; 5.1 took on Opus 5.5's refusals
        return ClaudeThinking(
            adaptive=True,
            xhigh=True,
            max=True,
            sampling=False,
            forced_tools=version < (5, 1),
            default_on=True,
            preserved=version >= (5, 1),
            structured=True,
        )
    adaptive = version >= (4, 6)
    off: dict[str, str] | None = None
    if (5, 0) <= version < (5, 5):
        off = {"type": "disabled"}
    elif version >= (5, 5) and family == "sonnet":
        off = {"type": "between_tools"}
    # `max` came with Opus 4.6, `xhigh` with Opus 4.7; a level a model may not take steps down to one it
    # does, which costs less than a 400 and a fallback.
    return ClaudeThinking(
        adaptive=adaptive,
        xhigh=version >= (4, 7),
        max=version >= (4, 7) or (adaptive and family == "opus"),
        sampling=version < (5, 0),
        forced_tools=version < (5, 5),
        default_on=version >= (5, 0),
        off=off,
        preserved=version >= (5, 5),
        structured=version >= (4, 5),
    )


@dataclass(frozen=True)
class Thinking:
    """A call's `max_tokens`, its `thinking` object (None: none sent) and its effort."""

    max_tokens: int
    config: dict[str, Any] | None = None
    effort: str | None = None

    def blocks_back(self, model: ClaudeThinking) -> bool:
        """Whether earlier turns' thinking blocks go back: with thinking on (asked, or the model's default)
        and with `between_tools`, whose progress notes go back as they came; not with `disabled`."""
        kind = (self.config or {}).get("type")
        return kind in ("enabled", "adaptive", "between_tools") or (kind is None and model.default_on)

    def on(self) -> bool:
        return (self.config or {}).get("type") in ("enabled", "adaptive")


def thinking_for(call: ProviderCall, default_max_tokens: int, model: ClaudeThinking) -> Thinking:
    """Thinking tokens count against `max_tokens`, on Anthropic's side as on OpenAI's, so a call that set
    none gets the effort's budget on top of the default (a budget is also kept under the client's
    `max_tokens`). A call goes without thinking when it asks for none (or "minimal"), when it forces a tool
    (Anthropic refuses thinking with a forced tool) and, with a budget, when the budget cannot fit (under
    1,024 tokens) or the call continues a tool loop whose assistant turn has no thinking block (Anthropic
    refuses that: the turn was answered without thinking, by another model or before the client asked
    for it; adaptive thinking may itself leave a turn without any, so it is not held to that)."""
    plain = Thinking(call.max_tokens or default_max_tokens)  # the model's own default
    # No thinking: said where the model thinks by default; one that cannot stop is asked for its least.
    least = "low" if model.default_on and model.off is None else None
    off = Thinking(plain.max_tokens, model.off, least)
    reasoning = call.reasoning
    if forces_a_tool(call) or (reasoning is not None and not reasoning.thinks()):
        return off
    if reasoning is None:
        return plain
    max_tokens = call.max_tokens or default_max_tokens + reasoning.budget()
    display = {"display": reasoning.display} if reasoning.display else {}
    if model.adaptive:
        # An adaptive request without an effort leaves the model its own default.
        effort = None if reasoning.adaptive and reasoning.effort is None else model.effort(reasoning.level())
        return Thinking(max_tokens, {"type": "adaptive", **display}, effort)
    budget = min(reasoning.budget(), max_tokens - 1)
    if budget < MIN_THINKING_BUDGET or loop_without_thinking(call.messages):
        return off
    return Thinking(max_tokens, {"type": "enabled", "budget_tokens": budget, **display})


def loop_without_thinking(messages: Sequence[ChatMessage]) -> bool:
    """The conversation ends in tool results for an assistant turn that holds no thinking block."""
    for message in reversed(messages):
        if message.role == "tool":
            continue
        return message.role == "assistant" and bool(message.tool_calls) and not anthropics(message.thinking)
    return False


def anthropics(thinking: Sequence[ThinkingBlock] | None) -> list[ThinkingBlock]:
    """The thinking blocks Anthropic takes back: signed ones (by Anthropic) and redacted ones; reasoning
    another provider returned has no signature and is left out."""
    return [b for b in thinking or [] if b.type == "redacted_thinking" or b.signature]


def forces_a_tool(call: ProviderCall) -> bool:
    return call.tool_choice == "required" or forced_function(call.tool_choice) is not None


def bound_blocks(
    thinking: dict[str, Any] | None, messages: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """The `thinking` object to send a model whose blocks are bound (`preserved`), when earlier turns'
    blocks go back with the call: adaptive thinking (the model's default when no `thinking` is sent, so
    saying it changes nothing else) that drops a block the binding check fails. Other objects as they are."""
    sent_back = any(
        isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking")
        for m in messages
        if m.get("role") == "assistant" and isinstance(m.get("content"), list)
        for block in m["content"]
    )
    if not sent_back or (thinking is not None and thinking.get("type") != "adaptive"):
        return thinking
    return {**(thinking or {"type": "adaptive"}), "block_binding": DROP_MISMATCHED_BLOCKS}
