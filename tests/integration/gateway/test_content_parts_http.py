"""Content parts of a chat completion's messages, as test_gateway_http.py runs the gateway (its own process on
a real nats-server and SQLite, the test playing the rest of the pipeline): a text part whose `text` is not a
string, or an image part whose `image_url` is not an object with a string `url`, is the client's mistake, a
400 naming the field, as OpenAI answers it, and no task. Before, such a part went on: the Anthropic and Gemini
adapters sent `text: null` as the text "None" and raised on an `image_url` string (a 502
`provider_bad_response` for the client's mistake), the OpenAI adapter passed it to the provider as sent.
The same for the Anthropic face's text and tool blocks, and its `tool_choice` forcing a tool with none."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.gateway.test_gateway_http import Pipeline, _auth, _error, gateway, pipeline

pytestmark = pytest.mark.integration
__all__ = ["gateway", "pipeline"]  # fixtures, used by name

URL = "https://example.com/cat.png"
BAD_PARTS: dict[str, tuple[dict[str, Any], str, str]] = {
    "text null": ({"type": "text", "text": None}, "invalid_type", "text"),
    "text a number": ({"type": "text", "text": 1}, "invalid_type", "text"),
    "text missing": ({"type": "text"}, "missing_field", "text"),
    "image_url a string": ({"type": "image_url", "image_url": URL}, "invalid_type", "image_url"),
    "image_url null": ({"type": "image_url", "image_url": None}, "invalid_type", "image_url"),
    "image_url missing": ({"type": "image_url"}, "missing_field", "image_url"),
    "url a number": ({"type": "image_url", "image_url": {"url": 1}}, "invalid_type", "image_url.url"),
    "url missing": ({"type": "image_url", "image_url": {"detail": "low"}}, "missing_field", "image_url.url"),
    "detail a number": (
        {"type": "image_url", "image_url": {"url": URL, "detail": 1}},
        "invalid_type",
        "image_url.detail",
    ),
}


def _body(part: dict[str, Any]) -> dict[str, Any]:
    question = {"type": "text", "text": "What is this?"}
    return {"model": "auto", "messages": [{"role": "user", "content": [question, part]}]}


def _refusal(r: httpx.Response) -> tuple[int, str | None, str | None]:
    if r.status_code == 200:
        return 200, None, None
    return r.status_code, _error(r)["code"], _error(r)["param"]


async def test_a_malformed_content_part_is_a_400_naming_its_field_and_no_task(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    base, key = gateway
    async with httpx.AsyncClient() as c:
        replies = {
            name: await c.post(f"{base}/v1/chat/completions", json=_body(part), headers=_auth(key))
            for name, (part, _, _) in BAD_PARTS.items()
        }
    got = {name: _refusal(r) for name, r in replies.items()}
    expected = {
        name: (400, code, f"messages.0.content.1.{field}") for name, (_, code, field) in BAD_PARTS.items()
    }
    assert got == expected
    assert {_error(r)["type"] for r in replies.values()} == {"invalid_request_error"}
    assert pipeline.seen == [], "no malformed part may become a task"


async def test_well_formed_text_and_image_parts_still_pass(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    base, key = gateway
    image = {"type": "image_url", "image_url": {"url": URL, "detail": "low"}}
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json=_body(image), headers=_auth(key))
    assert r.status_code == 200, r.text
    assert pipeline.seen[0].request.messages[0].content == _body(image)["messages"][0]["content"]


async def test_a_text_block_without_text_is_a_400_on_the_anthropic_face(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """Anthropic's API refuses a text block whose `text` is missing or null; before, it went on as an empty
    text (in the system prompt: dropped), the model answering a question the client did not send."""
    base, key = gateway
    question = {"type": "text", "text": "What is this?"}
    cases = {
        "messages.0.content.1.text": {
            "messages": [{"role": "user", "content": [question, {"type": "text"}]}]
        },
        "messages.0.content.0.text": {
            "messages": [{"role": "user", "content": [{"type": "text", "text": None}, question]}]
        },
        "system.1.text": {
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": None}],
            "messages": [{"role": "user", "content": "hi"}],
        },
    }
    headers = {**_auth(key), "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient() as c:
        replies = {
            param: await c.post(
                f"{base}/v1/messages", json={"model": "auto", "max_tokens": 5, **body}, headers=headers
            )
            for param, body in cases.items()
        }
    for param, r in replies.items():
        assert r.status_code == 400, (param, r.text)
        assert r.json()["type"] == "error"
        assert (r.json()["error"]["type"], r.json()["error"]["param"]) == ("invalid_request_error", param)
    assert pipeline.seen == []


def _tool_turns(use: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}, **use}
    answer = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C", **result}
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [answer]},
    ]


async def test_tool_blocks_of_the_wrong_types_are_a_400_on_the_anthropic_face(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """A tool_use's name (and id) is a string and its input an object, a tool_result's content a string or
    blocks, as Anthropic types them; before, `name: true` went to the model as the tool "True", `input: 1`
    as the arguments `1`, and a tool_result's `content: true` as the text "True"."""
    base, key = gateway
    cases = {
        "messages.1.content.0.name": _tool_turns({"name": True}, {}),
        "messages.1.content.0.id": _tool_turns({"id": 7}, {}),
        "messages.1.content.0.input": _tool_turns({"input": "Paris"}, {}),
        "messages.2.content.0.content": _tool_turns({}, {"content": True}),
        "messages.2.content.0.tool_use_id": _tool_turns({}, {"tool_use_id": 1}),
    }
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    headers = {**_auth(key), "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient() as c:
        replies = {
            param: await c.post(
                f"{base}/v1/messages",
                json={"model": "auto", "max_tokens": 5, "tools": tools, "messages": turns},
                headers=headers,
            )
            for param, turns in cases.items()
        }
        well_formed = await c.post(
            f"{base}/v1/messages",
            json={"model": "auto", "max_tokens": 5, "tools": tools, "messages": _tool_turns({}, {})},
            headers=headers,
        )
    got = {param: (r.status_code, r.json()["error"].get("param")) for param, r in replies.items()}
    assert got == {param: (400, param) for param in cases}
    assert well_formed.status_code == 200, well_formed.text
    assert len(pipeline.seen) == 1, "only the well-formed request became a task"


async def test_a_forced_tool_choice_without_tools_is_a_400_on_the_anthropic_face(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """`tool_choice` `any` or `tool` forces a call of a tool the request does not offer, as on the chat face
    (`required` without `tools`); before, it was dropped and the model answered in text."""
    base, key = gateway
    headers = {**_auth(key), "anthropic-version": "2023-06-01"}
    question = {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "Weather?"}]}
    async with httpx.AsyncClient() as c:
        replies = [
            await c.post(f"{base}/v1/messages", json={**question, "tool_choice": choice}, headers=headers)
            for choice in ({"type": "any"}, {"type": "tool", "name": "get_weather"})
        ]
        auto = await c.post(
            f"{base}/v1/messages", json={**question, "tool_choice": {"type": "auto"}}, headers=headers
        )
    assert [(r.status_code, r.json()["error"]["param"]) for r in replies] == [(400, "tool_choice")] * 2
    assert auto.status_code == 200, auto.text  # nothing forced: the model answers
    assert len(pipeline.seen) == 1
