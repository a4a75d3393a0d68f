"""The Anthropic face against the request shapes Claude Code (2.1.x) sends, as captured from the real client
through a logging proxy (trimmed: its system prompt and 24 tool definitions are ~75 KB)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchyard.executor.providers.anthropic import wire as anthropic_wire
from switchyard.executor.providers.base import ProviderCall
from switchyard.gateway import messages
from switchyard.gateway.errors import InvalidRequest
from tests.support.claude_code import MARK, first_turn

pytestmark = pytest.mark.unit


def parse(body: dict[str, Any]) -> Any:
    return messages.parse_request(orjson.dumps(body), max_prompt_chars=100_000)


def test_a_mid_conversation_system_message_stays_where_it_was_sent() -> None:
    request = parse(first_turn())
    assert [m.role for m in request.messages] == ["system", "user", "system"]
    assert request.messages[2].text() == "Available agent types for the Agent tool:\n- Explore: search"
    count = messages.parse_count_request(orjson.dumps(first_turn()))
    assert [m.role for m in count.messages] == ["system", "user", "system"]
    # An Anthropic model gets it among its system instructions, the marked blocks kept as they were.
    call = ProviderCall(model="claude-opus-4-8", messages=request.messages, max_tokens=64)
    system, sent = anthropic_wire.split_messages(call.messages)
    assert [m["role"] for m in sent] == ["user"]
    assert isinstance(system, list) and system[-1] == {"type": "text", "text": request.messages[2].text()}
    assert system[0] == {"type": "text", "text": "You are a Claude agent.", "cache_control": MARK}


def test_a_system_message_marked_for_the_cache_keeps_its_mark() -> None:
    body = first_turn()
    body["messages"][1] = {
        "role": "system",
        "content": [{"type": "text", "text": "agents", "cache_control": MARK}],
    }
    assert parse(body).messages[2].content == [{"type": "text", "text": "agents", "cache_control": MARK}]


ASSISTANT = {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}
USER = {"role": "user", "content": "again"}
SYSTEM = {"role": "system", "content": "x"}


@pytest.mark.parametrize(
    ("turns", "param", "says"),
    [
        ([SYSTEM, USER], "messages.0", "cannot be the first"),
        ([USER, ASSISTANT, SYSTEM], "messages.2", "must follow a user message"),
        ([USER, SYSTEM, SYSTEM], "messages.1", "last message or be followed by an assistant"),
        ([USER, SYSTEM, USER], "messages.1", "last message or be followed by an assistant"),
        ([USER, {"role": "system", "content": [{"type": "image", "source": {}}]}], "messages.1", "text only"),
    ],
)
def test_a_misplaced_system_message_is_refused_as_anthropic_refuses_it(
    turns: list[dict[str, Any]], param: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse({"model": "auto", "max_tokens": 10, "messages": turns})
    assert refused.value.param == param and says in refused.value.message


def test_claude_codes_billing_line_is_left_out_so_its_prompt_prefix_stays_the_same() -> None:
    """Claude Code's first system block is an attribution line whose hash changes with the session (and,
    in the interactive CLI, every request): sent on, it would start every prompt differently, and no
    provider's prompt cache (Anthropic's, OpenAI's, Gemini's) would ever hit the ~15k-token prefix."""
    first, second = first_turn(), first_turn()
    second["system"][0]["text"] = (
        "x-anthropic-billing-header: cc_version=2.1.197.87a; cc_entrypoint=cli; cch=71fea;"
    )
    one, two = parse(first), parse(second)
    assert one.messages == two.messages
    assert one.messages[0].content == [
        {"type": "text", "text": "You are a Claude agent.", "cache_control": MARK}
    ]
    counted = messages.parse_count_request(orjson.dumps(second))
    assert counted.messages == one.messages
    # A system prompt that only mentions the header, or says more than the line, is the client's own.
    said = first_turn(system="x-anthropic-billing-header: a\nand more")
    assert parse(said).messages[0].content == "x-anthropic-billing-header: a\nand more"
