"""The Anthropic face's rules on how turns follow one another, refused with Anthropic's 400s before a
request is sent on (each provider would take or refuse them its own way, as the router happened to pick)."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

from switchyard.gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from switchyard.gateway.message_models import InputMessage


def _ids(message: InputMessage, kind: str, key: str) -> list[str]:
    blocks = message.content if isinstance(message.content, list) else []
    return [str((b.model_extra or {}).get(key)) for b in blocks if b.type == kind]


def check_answered(turns: list[InputMessage]) -> None:
    """Anthropic's 400 for a `tool_use` whose `tool_result` is not in the next message (a turn that
    follows it: the last turn's calls are the answer being continued). Sent on, it would be refused by
    OpenAI's API, and taken or not by others, as the router happened to pick."""
    for i, (turn, after) in enumerate(pairwise(turns)):
        if turn.role != "assistant":
            continue
        answered = set(_ids(after, "tool_result", "tool_use_id"))
        missing = [call for call in _ids(turn, "tool_use", "id") if call not in answered]
        if missing:
            raise InvalidRequest(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message.",
                param=f"messages.{i}",
                code="invalid_value",
            )


def check_non_empty(turns: list[InputMessage]) -> None:
    """Anthropic's 400 for a turn with no content (`""` or `[]`), but a last assistant turn (a prefill
    left empty: the model answers from the start)."""
    for i, turn in enumerate(turns):
        if turn.content in ("", []) and not (turn.role == "assistant" and i == len(turns) - 1):
            raise InvalidRequest(
                f"messages.{i}: all messages must have non-empty content except for the optional final "
                "assistant message",
                param=f"messages.{i}",
                code="invalid_value",
            )


def check_system_turns(turns: list[InputMessage]) -> None:
    """Mid-conversation system messages (`role: "system"` in `messages`; Claude Code sends one on its
    first turn) placed as Anthropic places them: not first, right after a user message (Anthropic also
    takes one after a server tool use, which is not served here), last or followed by an assistant turn,
    and text only. Anywhere else Anthropic answers 400, and so does Switchyard, whichever model answers."""
    for i, turn in enumerate(turns):
        if turn.role != "system":
            continue
        problem = None
        if i == 0:
            problem = "cannot be the first message: give instructions for the whole conversation as `system`"
        elif turns[i - 1].role != "user":
            problem = "must follow a user message"
        elif i + 1 < len(turns) and turns[i + 1].role != "assistant":
            problem = "must be the last message or be followed by an assistant message"
        elif isinstance(turn.content, list) and any(b.type != "text" for b in turn.content):
            problem = "takes text only (a string or text blocks)"
        if problem is not None:
            raise InvalidRequest(
                f"messages.{i}: a system message {problem}", param=f"messages.{i}", code="invalid_value"
            )
