"""A provider's stream closed early (a cut, a client gone) closes its HTTP response at once, through every
layer of the adapter, not when a generator is collected."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import ProviderCall, TextDelta
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings

pytestmark = pytest.mark.unit
CHUNK = b'data: {"choices": [{"index": 0, "delta": {"content": "The"}}]}\n\n'


class Body(httpx.AsyncByteStream):
    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield CHUNK
        yield CHUNK

    async def aclose(self) -> None:
        self.closed = True


async def test_a_stream_closed_after_its_first_part_closes_its_response() -> None:
    body = Body()
    transport = httpx.MockTransport(
        lambda _: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)
    )
    client = httpx.AsyncClient(transport=transport, base_url="http://upstream.test/")
    provider = OpenAIProvider(
        OpenAISettings(api_key="sk-test", base_url="http://upstream.test/v1"), client=client
    )
    call = ProviderCall(model="m", messages=(ChatMessage(role="user", content="hi"),))
    parts = provider.stream(call)
    assert isinstance(await anext(parts), TextDelta)  # type: ignore[call-overload]
    await parts.aclose()  # type: ignore[attr-defined]
    assert body.closed
