"""`truncation: "auto"`: a prompt cut to a context window from its oldest turns, its system message kept,
what is kept starting at a user's turn."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage, ChatRequest, FunctionCall, ToolCall
from switchyard.common.tokens import count_prompt
from switchyard.router.truncation import fitted, message_tokens

pytestmark = pytest.mark.unit


def _said(role: str, words: int, label: str = "") -> ChatMessage:
    return ChatMessage(role=role, content=label + " word" * words)


def _request(*messages: ChatMessage) -> ChatRequest:
    return ChatRequest(model="auto", messages=list(messages), truncation="auto")


def test_the_oldest_turns_go_and_what_is_kept_fits_and_starts_at_a_users_turn() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="f", arguments="{}"))
    messages = [
        _said("system", 5),
        _said("user", 100, "q1"),
        ChatMessage(role="assistant", tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="c1", content="r" * 400),
        _said("assistant", 100, "a1"),
        _said("user", 100, "q2"),
        _said("assistant", 100, "a2"),
        _said("user", 10, "q3"),
    ]
    request = _request(*messages)
    whole = count_prompt(request)
    assert whole == count_prompt(_request(messages[0])) + sum(message_tokens(m) for m in messages[1:])
    # room for the last four: the first kept would be the tool's result, whose call is dropped
    room = whole - sum(message_tokens(m) for m in messages[1:4])
    cut = fitted(request, prompt_tokens=whole, room=room)
    assert cut is not None and cut.messages == [messages[0], *messages[5:]]
    assert count_prompt(cut) <= room
    assert fitted(request, prompt_tokens=whole, room=whole) is None  # it fits: nothing to drop
    last_alone = count_prompt(_request(messages[0], messages[-1]))
    assert fitted(request, prompt_tokens=whole, room=last_alone - 1) is None  # not even the last turn


def test_without_a_system_message_the_first_kept_is_a_users_turn() -> None:
    messages = [_said("user", 50, "q1"), _said("assistant", 50, "a1"), _said("user", 50, "q2")]
    request = _request(*messages)
    whole = count_prompt(request)
    cut = fitted(request, prompt_tokens=whole, room=whole - message_tokens(messages[0]))
    assert cut is not None and cut.messages == messages[2:]
