"""Server-Sent Events read from the raw bytes of a response, however the network splits them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from switchyard.executor.providers.http import SseEvent, sse_events

pytestmark = pytest.mark.unit


async def events_of(*parts: bytes) -> list[SseEvent]:
    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    response = httpx.Response(200, content=body())
    return [event async for event in sse_events(response)]


def split_everywhere(raw: bytes) -> list[tuple[bytes, ...]]:
    """The stream cut in two at every byte, and cut into single bytes."""
    return [(raw[:i], raw[i:]) for i in range(1, len(raw))] + [tuple(bytes([b]) for b in raw)]


async def test_events_are_the_same_wherever_the_stream_is_cut() -> None:
    raw = (
        b": a comment\r\n"
        b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
        b'data: {"text": "caf\xc3\xa9 \xe2\x82\xac"}\n\n'  # multi-byte UTF-8, cut anywhere in it
        b"data: line one\rdata: line two\r\r"  # CR alone ends a line too
        b"data: [DONE]\n\n"
    )
    expected = [
        SseEvent("message_start", '{"a": 1}'),
        SseEvent("message", '{"text": "café €"}'),
        SseEvent("message", "line one\nline two"),
        SseEvent("message", "[DONE]"),
    ]
    assert await events_of(raw) == expected
    for parts in split_everywhere(raw):
        assert await events_of(*parts) == expected, parts


async def test_a_last_event_without_its_blank_line_or_line_end_is_still_delivered() -> None:
    assert await events_of(b"data: first\n\n", b"event: last\ndata: x") == [
        SseEvent("message", "first"),
        SseEvent("last", "x"),
    ]
    assert await events_of(b"data: a\r") == [SseEvent("message", "a")]


async def test_fields_other_than_event_and_data_are_ignored_and_empty_events_dropped() -> None:
    got = await events_of(b"id: 7\nretry: 100\n\n", b"data:no space\n\n", b"\n\n")
    assert got == [SseEvent("message", "no space")]
