"""A task that asks for it (`ChatRequest.truncation: "auto"`, the Responses API's `truncation`) and is too
long for every model it could go to is cut to fit the largest of their context windows: its oldest turns
dropped, as OpenAI drops items "from the beginning of the conversation" to fit a model's context window.
Its leading system and developer messages stay; what is kept of the rest starts at a user's turn, so that
no tool result whose call was dropped, nor an answer whose question was, is left at its head. Counted as
the router counts a prompt (`tokens.count_prompt`: each message's text and tool calls, its media)."""

from __future__ import annotations

from switchyard.common.events import ChatMessage, ChatRequest
from switchyard.common.media_tokens import media_tokens
from switchyard.common.tokens import PER_MESSAGE, PER_TOOL, count_text

LEADING = ("system", "developer")


def message_tokens(message: ChatMessage) -> int:
    """What `message` adds to its prompt's count."""
    calls = sum(
        PER_TOOL + count_text(c.function.name) + count_text(c.function.arguments)
        for c in message.tool_calls or []
    )
    return PER_MESSAGE + count_text(message.text()) + calls + media_tokens([message])


def fitted(request: ChatRequest, *, prompt_tokens: int, room: int) -> ChatRequest | None:
    """`request` (counted `prompt_tokens`) with its oldest turns dropped so that its prompt counts at most
    `room`; None when that leaves no user's turn, or drops nothing."""
    messages = request.messages
    head = 0
    while head < len(messages) and messages[head].role in LEADING:
        head += 1
    rest = messages[head:]
    sizes = [message_tokens(m) for m in rest]
    total = prompt_tokens - sum(sizes)  # the reply's framing, its tools, its leading messages
    start = len(rest)
    while start > 0 and total + sizes[start - 1] <= room:
        start -= 1
        total += sizes[start]
    while start < len(rest) and rest[start].role != "user":
        start += 1
    if start == 0 or start == len(rest):
        return None
    return request.model_copy(update={"messages": [*messages[:head], *rest[start:]]})
