"""The Anthropic face's request fields beyond text: tools and tool_choice, tool_use and tool_result blocks
(each tool_use answered in the next turn, each tool_result answering one), images and cache marks, carried
into the pipeline's request; the blocks that cannot be sent, a 400 naming them."""

from __future__ import annotations

import orjson
import pytest

from switchyard.common.events import FunctionCall, ToolCall
from switchyard.executor.providers.anthropic import wire as anthropic_wire
from switchyard.executor.providers.base import ProviderCall
from switchyard.gateway import messages
from switchyard.gateway.errors import InvalidRequest

pytestmark = pytest.mark.unit


def test_an_anthropic_tool_result_without_its_tool_use_is_a_400() -> None:
    body = orjson.dumps(
        {
            "model": "auto",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "21C"}],
                }
            ],
        }
    )
    with pytest.raises(InvalidRequest) as caught:
        messages.parse_request(body, max_prompt_chars=1000)
    assert caught.value.param == "messages" and "tool_use_id 'toolu_9'" in caught.value.message


def test_an_anthropic_tool_use_its_next_turn_does_not_answer_is_a_400() -> None:
    """As Anthropic refuses it (and OpenAI would, had the router picked it); the last turn's calls are
    not answered yet, and two calls take two results."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    both = [call, {**call, "id": "toolu_2"}]
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"}
    ask = {"role": "user", "content": "Weather?"}
    turns = [ask, {"role": "assistant", "content": both}, {"role": "user", "content": [result]}]
    for sent in (turns, [*turns[:2], {"role": "user", "content": "never mind"}]):
        with pytest.raises(InvalidRequest) as caught:
            messages.parse_request(_anthropic(messages=sent), max_prompt_chars=1000)
        assert caught.value.param == "messages.1"
        assert "without `tool_result` blocks immediately after: toolu_" in caught.value.message
    answered = [*turns[:2], {"role": "user", "content": [result, {**result, "tool_use_id": "toolu_2"}]}]
    assert len(messages.parse_request(_anthropic(messages=answered), max_prompt_chars=1000).messages) == 4
    assert (
        messages.parse_request(_anthropic(messages=turns[:2]), max_prompt_chars=1000).messages[-1].tool_calls
    )


def test_anthropic_tools_and_tool_blocks_become_the_pipelines() -> None:
    body = orjson.dumps(
        {
            "model": "auto",
            "max_tokens": 10,
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me look."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "21C"}],
                        },
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ],
        }
    )
    parsed = messages.parse_request(body, max_prompt_chars=1000)
    assert parsed.tools and parsed.tools[0].function.parameters == {"type": "object"}
    assert parsed.tool_choice == "required" and parsed.parallel_tool_calls is False
    roles = [(m.role, m.text()) for m in parsed.messages]
    assert roles == [
        ("user", "weather?"),
        ("assistant", "Let me look."),
        ("tool", "21C"),
        ("user", "And tomorrow?"),
    ]
    assert parsed.messages[1].tool_calls == [
        ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments='{"city":"Paris"}'))
    ]
    assert parsed.messages[2].tool_call_id == "toolu_1"
    with pytest.raises(InvalidRequest):
        messages.parse_request(
            orjson.dumps(
                {
                    "model": "auto",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": [{"type": "document"}]}],
                }
            ),
            max_prompt_chars=1000,
        )


def _anthropic(**fields: object) -> bytes:
    return orjson.dumps({"model": "auto", "max_tokens": 10, **fields})


def test_anthropic_images_and_cache_marks_become_parts_and_plain_text_stays_a_string() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    linked = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    marked = {"type": "text", "text": "Stable.", "cache_control": {"type": "ephemeral"}}
    body = _anthropic(
        system=[{"type": "text", "text": "Be brief."}, marked],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": [image, linked, {"type": "text", "text": "What is this?"}]},
        ],
    )
    parsed = messages.parse_request(body, max_prompt_chars=1000)
    system, several, one, pictured = parsed.messages
    assert system.content == [{"type": "text", "text": "Be brief."}, {**marked}]
    # several text blocks stay blocks (Claude 5.5 checks that earlier turns come back unchanged); one
    # unmarked block is a string, which Anthropic reads the same
    assert several.content == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert several.text() == "a\nb" and one.content == "ok"
    sent = anthropic_wire.request_body(
        ProviderCall(model="claude-sonnet-5-5", messages=tuple(parsed.messages)),
        stream=False,
        default_max_tokens=64,
    )
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert pictured.content == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is this?"},
    ]
    assert pictured.text() == "What is this?"


@pytest.mark.parametrize(
    ("fields", "says", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]},
            "an image block needs a `source`",
            "messages.0.content.0.source",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "text/plain", "data": "eA=="},
                            }
                        ],
                    }
                ]
            },
            "an image block needs a `source`",
            "messages.0.content.0.source",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "x", "cache_control": {"type": "x"}}],
                    }
                ]
            },
            "cache_control must be",
            "messages.0.content.0.cache_control",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "9d"}}
                        ],
                    }
                ]
            },
            "cache_control.ttl",
            "messages.0.content.0.cache_control.ttl",
        ),
        (
            {
                "system": [{"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}}],
                "messages": [{"role": "user", "content": "hi"}],
            },
            "system takes text blocks only",
            "system",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": [{"text": "no type"}]}
                        ],
                    },
                ]
            },
            "a tool_result's content blocks need a type",
            "messages.2.content.0.content",
        ),
    ],
)
def test_anthropic_blocks_that_cannot_be_sent_are_a_400_naming_them(
    fields: dict[str, object], says: str, param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        messages.parse_request(_anthropic(**fields), max_prompt_chars=1000)
    # the block's own path, as a document's errors name it (not `messages` for every block of every turn)
    assert says in refused.value.message and refused.value.param == param


def test_an_alias_named_on_the_anthropic_face_stays_the_alias() -> None:
    """litellm's `anthropic/<alias>` (and any Anthropic SDK) sends a bare alias to /v1/messages, which
    /v1/models lists: it is served as the alias, not as the anthropic provider's model of that name."""
    aliases = {"scripted": "openai/scripted"}
    body = {"model": "scripted", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    parsed = messages.parse_request(orjson.dumps(body), max_prompt_chars=1_000, aliases=aliases)
    assert parsed.model == "scripted"
    counted = messages.parse_count_request(orjson.dumps(body), aliases=aliases)
    assert counted.model == "scripted"
    claude = messages.parse_request(
        orjson.dumps({**body, "model": "claude-haiku-5-5"}), max_prompt_chars=1_000, aliases=aliases
    )
    assert claude.model == "anthropic/claude-haiku-5-5"  # a bare name that is no alias: Anthropic's
