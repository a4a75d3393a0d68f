"""Providers that misbehave, over real HTTP, for every protocol: answers too large to hold (a gzip bomb, a
stream line of tens of MiB) fail as `bad_response` at a bound instead of being held by the executor."""

from __future__ import annotations

import time

import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.base import KeepAlive, Reply, StreamingProvider
from switchyard.executor.providers.http import MAX_ANSWER_BYTES, MAX_LINE_BYTES
from tests.integration.executor.test_adapters import (
    QUESTION,
    Upstream,
    adapter,
    call,
    collect,
    servers,
    upstream,
)

pytestmark = pytest.mark.integration
__all__ = ["adapter", "servers", "upstream"]  # the fixtures, shared with the adapters' suite


async def test_an_answer_whose_body_decodes_past_the_bound_is_a_bad_response(
    adapter: StreamingProvider,
) -> None:
    mib = MAX_ANSWER_BYTES // 2**20 + 8  # ~70 KiB on the wire, gzipped
    with pytest.raises(ProviderError) as caught:
        await adapter.request(call(f"bomb-{mib}"))
    assert caught.value.kind == "bad_response"
    assert "the answer's body is larger than 64 MiB" in caught.value.message


async def test_a_stream_line_past_the_bound_is_a_bad_response_read_once(adapter: StreamingProvider) -> None:
    started = time.monotonic()
    _, final, error = await collect(adapter, call(f"longline-{MAX_LINE_BYTES // 2**20 + 2}"))
    assert error is not None and error.kind == "bad_response" and final is None
    assert "a line of the stream is longer than 32 MiB" in error.message
    # the old reader copied the line so far at every read: 34 MiB took ~10 s here, and 200 MiB 2 minutes
    assert time.monotonic() - started < 3.0


async def test_a_long_line_within_the_bound_is_read(adapter: StreamingProvider) -> None:
    deltas, final, error = await collect(adapter, call("longline-4"))
    assert error is None and final is not None and deltas


async def test_a_provider_key_quoted_back_in_an_error_is_taken_out(upstream: Upstream) -> None:
    provider = upstream.adapter()
    key = upstream.fake.api_key
    with pytest.raises(ProviderError) as caught:
        await provider.request(call("echo-key"))
    _, _, streamed = await collect(provider, call("echo-key"))
    await provider.aclose()  # type: ignore[attr-defined]
    for error in (caught.value, streamed):
        assert error is not None and error.kind == "bad_request"
        assert key not in error.message and key not in str(error) and "[REDACTED]" in error.message


async def test_an_error_object_answered_200_is_that_error(adapter: StreamingProvider) -> None:
    """A prompt too long, said in the provider's error object with a 200: the next candidate (a larger
    window) at once, not a bad answer retried against the same model and charged to its breaker."""
    with pytest.raises(ProviderError) as caught:
        await adapter.request(call("context-in-200"))
    _, _, streamed = await collect(adapter, call("context-in-200"))
    for error in (caught.value, streamed):
        assert error is not None and error.kind == "context_too_long", error


async def test_a_proxy_page_answered_200_is_a_bad_response(adapter: StreamingProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        await adapter.request(call("html-200"))
    _, _, streamed = await collect(adapter, call("html-200"))
    for error in (caught.value, streamed):
        assert error is not None and error.kind == "bad_response", error
    assert streamed is not None and "HTML page, not an event stream" in streamed.message


async def test_a_stream_answered_whole_is_that_answer(adapter: StreamingProvider) -> None:
    """A compatible server that does not stream answers a stream's call with the whole JSON answer: its
    parts, as a stream would have sent them, not a stream that "ended before it finished"."""
    deltas, final, error = await collect(adapter, call("whole-stream"))
    assert error is None and final is not None
    assert "".join(deltas) == final.content == f"Hello! You said: {QUESTION}"


async def test_anthropics_pings_come_through_as_keep_alives(servers: dict[str, Upstream]) -> None:
    provider = servers["anthropic"].adapter()
    parts = [part async for part in provider.stream(call("model-a"))]
    await provider.aclose()  # type: ignore[attr-defined]
    assert any(isinstance(part, KeepAlive) for part in parts) and isinstance(parts[-1], Reply)
