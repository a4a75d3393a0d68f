"""The Google Gemini adapter: generateContent, streamGenerateContent as Server-Sent Events, and
batchEmbedContents (`embeddings.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import httpx

from switchyard.common.errors import ProviderError
from switchyard.common.events import TokenLogprob, Usage
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    UnsignedThinking,
    estimated_usage,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.gemini import embeddings
from switchyard.executor.providers.gemini.config import GeminiSettings
from switchyard.executor.providers.gemini.wire import (
    Candidate,
    error_from_body,
    finish_reason,
    model_path,
    parse_reply,
    request_body,
    text_signatures,
    tool_calls_of,
)
from switchyard.executor.providers.http import (
    DEFAULT_TIMEOUT_S,
    HttpProvider,
    parse_json,
    sse_events,
    transport_errors,
)

NAME = "gemini"
T = TypeVar("T")


class GeminiProvider(HttpProvider):
    name = NAME
    carries = True  # its function calls' thought signatures: see `ProviderCall.carried`

    def __init__(
        self,
        settings: GeminiSettings,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url=settings.resolved_base_url(), timeout_s=timeout_s, client=client)
        self._settings = settings

    def _headers(self, *, stream: bool) -> dict[str, str]:
        # The key goes in a header, never in the URL's `?key=`: URLs end up in logs and error messages.
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._settings.api_key is not None:
            headers["x-goog-api-key"] = self._settings.api_key.get_secret_value()
        return headers

    def _path(self, call: ProviderCall, *, stream: bool) -> str:
        return model_path(call.model, api_version=self._settings.api_version, stream=stream)

    def _body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        return request_body(call)

    def _error(self, status: int, raw: bytes, headers: httpx.Headers) -> ProviderError:
        return error_from_body(status, raw, headers)

    def _reply(self, raw: bytes, call: ProviderCall) -> Reply:
        return parse_reply(raw, call)

    async def _parts(self, response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]:
        """Each event is a whole GenerateContentResponse holding the next piece of text; the last one
        carries the finish reason and the usage. There is no end marker: a stream that closes before a
        finish reason arrived was cut off."""
        text: list[str] = []
        tokens: list[TokenLogprob] = []  # the answer's, when the call asked for their log probabilities
        told = 0  # how many went out on text deltas (a chunk's tokens without text go with the next text)
        thought = UnsignedThinking()
        calls: list[Any] = []
        signature: str | None = None  # the answer's text's, which comes on its last part
        finish: str | None = None
        model = call.model
        usage: Usage | None = None
        async with transport_errors(NAME):
            async for event in sse_events(response):
                candidate = Candidate(parse_json(event.data.encode(), what="a stream chunk"))
                model = candidate.model or model
                usage = candidate.usage or usage
                calls += candidate.calls
                signature = candidate.text_signature or signature
                finish = candidate.finish or finish
                for part in thought.add(candidate.thought):
                    yield part
                if call.logprobs:
                    tokens += candidate.logprobs()
                if candidate.text:
                    for part in thought.end():  # the summary is over: its block ends, unsigned
                        yield part
                    text.append(candidate.text)
                    yield TextDelta(candidate.text, tuple(tokens[told:]))
                    told = len(tokens)
        if finish is None:
            raise provider_error("network", "gemini: the stream ended before a finish reason")
        content = "".join(text)
        for part in thought.end():  # a summary, then function calls or nothing: its block ends here
            yield part
        tool_calls, carry = tool_calls_of(calls)
        carry |= text_signatures(content, signature)
        yield Reply(
            content=content,
            finish_reason=finish_reason(finish, text=content, calls=calls),
            model=model,
            usage=usage or estimated_usage(call, content),
            usage_estimated=usage is None,
            tool_calls=tool_calls,
            thinking=thought.blocks(),
            carry=carry,
            logprobs=tuple(tokens) if call.logprobs else None,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        """One batchEmbedContents request per 100 inputs, sent at once, each bounded by the call's time;
        the first failure fails the call and stops the other requests."""
        parts = await _all([self._embed_batch(call, texts) for texts in embeddings.batches(call.inputs)])
        return embeddings.joined(call, parts)

    async def _embed_batch(self, call: EmbeddingCall, texts: Sequence[str]) -> embeddings.Batch:
        path = embeddings.batch_path(call.model, api_version=self._settings.api_version)
        body = embeddings.request_body(call.model, texts, dimensions=call.dimensions)
        raw = await self._post(path, body, timeout_s=call.timeout_s)
        return embeddings.parse_batch(raw, call, texts)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """The results of `calls` run concurrently, in their order; on the first failure the others are
    cancelled (and awaited) before it is raised. (`asyncio.gather` leaves them running, and a TaskGroup
    would raise its failures wrapped in an ExceptionGroup.)"""
    if len(calls) == 1:
        return [await calls[0]]
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
