"""A Responses request's `truncation: "auto"`: the items before its own (a conversation's, a previous
response's) cut from their beginning until the whole input fits what the gateway takes of one prompt
(SWITCHYARD_MAX_PROMPT_CHARS of text) and the bus carries as one task, as OpenAI drops items "from the
beginning of the conversation" to fit a model's context window (which the router then does: the task
carries `truncation`, `switchyard.router.truncation`). Without it (`disabled`, OpenAI's default)
such a request is refused, saying how to go on: a conversation only grows, so every later turn of it
would be refused the same way.

Sizes are read per item as the limits count them: the bus's as the item's JSON (`chain._check_size`), the
prompt's as the text a model reads of it (message text and tool output, never an image's data), counted
high, so that what is kept always passes the checks that follow."""

from __future__ import annotations

from typing import Any

import orjson

_TEXT = frozenset(("text", "content", "output"))  # where an item's text is (message parts, tool output)


def hint(*, conversation: bool) -> str:
    """How to go on with a conversation (or a previous response's chain) too large to answer whole."""
    way = 'send `truncation: "auto"` to answer after its newest items that fit'
    if conversation:
        return (
            f"{way}, or delete items of the conversation (DELETE /v1/conversations/{{id}}/items/{{item_id}})"
        )
    return f"{way}, or start again from a shorter input"


def text_chars(value: Any, *, key: str | None = None) -> int:
    """The characters of text a model reads of `value` (an item), counted high: every text of it, and one
    for the line each joins its message with."""
    if isinstance(value, str):
        return len(value) + 1 if key in _TEXT else 0
    if isinstance(value, dict):
        return sum(text_chars(v, key=k) for k, v in value.items())
    if isinstance(value, list):
        return sum(text_chars(v, key=key) for v in value)
    return 0


def kept(
    context: list[dict[str, Any]],
    own: list[dict[str, Any]],
    *,
    max_bytes: int,
    max_chars: int,
    instructions: str | None,
) -> list[dict[str, Any]]:
    """The newest items of `context` that fit with `own` and `instructions` within both limits, beginning
    with a message (a tool's output, or a reasoning item, whose call or answer was dropped would stand for
    nothing). All of it when it fits; none when `own` alone does not (its own checks then say so)."""
    size = sum(len(orjson.dumps(item)) for item in own)
    chars = sum(text_chars(item) for item in own) + (len(instructions) + 1 if instructions else 0)
    start = len(context)
    while start > 0:
        item = context[start - 1]
        size += len(orjson.dumps(item))
        chars += text_chars(item)
        if size > max_bytes or chars > max_chars:
            break
        start -= 1
    else:
        return context
    while start < len(context) and context[start].get("type", "message") != "message":
        start += 1
    return context[start:]
