"""An OpenAI provider whose upstream answers every call with one SSE stream of `events` (an httpx mock
transport: the stream parsing is what the tests look at)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings


def openai_streaming(*events: Any) -> OpenAIProvider:
    """`events`: chunk objects, or raw bytes (`b"[DONE]"`)."""
    body = b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n" for e in events)
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body)),
        base_url="http://upstream.test/",
    )
    settings = OpenAISettings(api_key="sk-test", base_url="http://upstream.test/v1")
    return OpenAIProvider(settings, client=client)
