"""Streamed calls keep their upstream connection: a stream read to its end marker is read to the end of its
body, so httpx puts the connection back in its pool and the next call sends at once, with no new TCP (or
TLS) handshake before its first token. Against a raw HTTP/1.1 server that counts its connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import ProviderCall, Reply, TextDelta
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings

pytestmark = pytest.mark.integration


def _event(body: dict[str, object] | str) -> bytes:
    data = body if isinstance(body, str) else orjson.dumps(body).decode()
    event = f"data: {data}\n\n".encode()
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


@dataclass
class SseServer:
    """Answers every chat completion with a chunked SSE stream; `end_body` False leaves the body open after
    `[DONE]` (a server that never finishes its response)."""

    end_body: bool = True
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for text in ("Hello", " there"):
                    writer.write(
                        _event({"model": "m", "choices": [{"index": 0, "delta": {"content": text}}]})
                    )
                    await writer.drain()
                writer.write(
                    _event({"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                )
                writer.write(_event("[DONE]"))
                if not self.end_body:
                    await writer.drain()
                    await asyncio.sleep(30)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[SseServer, str]]:
    fake = SseServer()
    listening = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    yield fake, f"http://127.0.0.1:{port}/v1"
    listening.close()


async def streamed(provider: OpenAIProvider) -> tuple[str, Reply]:
    call = ProviderCall(model="m", messages=(ChatMessage(role="user", content="Hi"),), timeout_s=10)
    text, final = "", None
    async for part in provider.stream(call):
        if isinstance(part, TextDelta):
            text += part.text
        else:
            final = part
    assert final is not None
    return text, final


async def test_streamed_calls_reuse_one_connection(server: tuple[SseServer, str]) -> None:
    fake, url = server
    provider = OpenAIProvider(OpenAISettings(api_key="sk-test", base_url=url))
    try:
        for _ in range(3):
            text, final = await streamed(provider)
            assert text == final.content == "Hello there" and final.finish_reason == "stop"
    finally:
        await provider.aclose()
    assert fake.connections == 1


async def test_a_body_left_open_after_done_still_ends_the_call(server: tuple[SseServer, str]) -> None:
    fake, url = server
    fake.end_body = False
    provider = OpenAIProvider(OpenAISettings(api_key="sk-test", base_url=url))
    try:
        started = time.monotonic()
        text, final = await streamed(provider)
        assert text == final.content == "Hello there"
        assert time.monotonic() - started < 5  # bounded by FINISH_BODY_S, not the 30 s the server waits
        await streamed(provider)  # that connection was given up: the next call opens another
    finally:
        await provider.aclose()
    assert fake.connections == 2
