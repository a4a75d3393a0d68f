"""`truncation: "auto"`: the items before a request's own cut from their beginning to fit the prompt's and
the bus's limits, starting at a message."""

from __future__ import annotations

from typing import Any

import orjson

from switchyard.gateway.stored_responses.truncation import kept, text_chars


def _said(role: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "c1", "output": "x" * 50}


def test_a_context_that_fits_is_kept_whole() -> None:
    context = [OUTPUT, _said("user", "a"), _said("assistant", "b")]
    assert kept(context, [_said("user", "c")], max_bytes=10_000, max_chars=100, instructions=None) == context


def test_the_oldest_items_go_until_the_text_fits_and_what_is_kept_starts_with_a_message() -> None:
    context = [_said("user", "a" * 40), CALL, OUTPUT, _said("assistant", "b" * 40), _said("user", "c" * 40)]
    own = [_said("user", "d" * 10)]
    # room for the last two messages and the output, but the output's call is dropped: it goes too
    assert kept(context, own, max_bytes=10_000, max_chars=150, instructions=None) == context[3:]
    assert kept(context, own, max_bytes=10_000, max_chars=150, instructions="i" * 60) == context[4:]
    assert kept(context, own, max_bytes=10_000, max_chars=5, instructions=None) == []


def test_the_bus_limit_counts_an_items_json_and_the_prompt_its_text_only() -> None:
    image = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_image", "image_url": "data:image/png;base64," + "A" * 5000}],
    }
    assert text_chars(image) == 0
    context = [image, _said("user", "a")]
    size = sum(len(orjson.dumps(i)) for i in context)
    assert kept(context, [], max_bytes=size, max_chars=10, instructions=None) == context
    assert kept(context, [], max_bytes=size - 1, max_chars=10, instructions=None) == context[1:]
