"""The Google Gemini adapter: generateContent, streamGenerateContent as Server-Sent Events, and
batchEmbedContents (`embeddings.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import httpx

from switchyard.common.errors import ProviderError
from switchyard.common.events import Choice, Usage
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    PromptCounted,
    ProviderCall,
    Reply,
    StreamedAnswer,
    StreamPart,
    estimated_usage,
    reply_of,
    spoken,
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
    MAX_EMBEDDINGS_BYTES,
    HttpProvider,
    parse_json,
    sse_events,
    transport_errors,
)
from switchyard.executor.providers.tool_names import GEMINI

NAME = "gemini"
T = TypeVar("T")


class GeminiProvider(HttpProvider):
    name = NAME
    carries = True  # its function calls' thought signatures: see `ProviderCall.carried`
    function_names = GEMINI  # a letter or `_` first, at most 64 (`tool_names.py`)

    def __init__(
        self,
        settings: GeminiSettings,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=settings.resolved_base_url(), timeout_s=timeout_s, client=client, secret=settings.api_key
        )
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
        """Each event is a whole GenerateContentResponse holding the next piece of text of one or more
        candidates (each by its `index`: a call for several, `n`, gets them interleaved); a candidate's
        last piece carries its finish reason (of several, its end goes out then), the last event the
        usage. There is no end marker: a stream that closes before every candidate's finish reason
        arrived was cut off. Each event's `usageMetadata` counts the whole prompt: one before any output
        is passed on before it (`PromptCounted`)."""
        answers: dict[int, _Answer] = {0: _Answer(0)}
        model = call.model
        usage: Usage | None = None
        began = False  # output went: a count now is no longer the stream's start's
        async with transport_errors(NAME):
            async for event in sse_events(response):
                first = Candidate(parse_json(event.data.encode(), what="a stream chunk"))
                model = first.model or model
                if usage is None and not began and first.usage is not None and first.usage.prompt_tokens:
                    yield PromptCounted(first.usage)
                usage = first.usage or usage
                for candidate in first.all():
                    if 0 <= candidate.index < call.n:
                        answer = answers.get(candidate.index) or answers.setdefault(
                            candidate.index, _Answer(candidate.index)
                        )
                        for part in answer.add(candidate, logprobs=call.logprobs):
                            began = True
                            yield part
                        if call.n > 1 and answer.finish is not None and not answer.ended:
                            for part in answer.ends(answer.answer(logprobs=call.logprobs)[0]):
                                yield part  # its finish reason came: it ends now, the others go on
        if any(a.finish is None for a in answers.values()):
            raise provider_error("network", "gemini: the stream ended before a finish reason")
        if len(answers) < call.n:
            raise provider_error("bad_response", f"{call.n} candidates asked for, {len(answers)} streamed")
        ordered = [answers[i] for i in range(call.n)]
        carry = text_signatures(ordered[0].content(), ordered[0].signature)  # the first answer's goes back
        choices = []
        for answer in ordered:
            for part in answer.end():  # a summary, then function calls or nothing: it ends here
                yield part
            choice, kept = answer.answer(logprobs=call.logprobs)
            choices.append(choice)
            carry |= kept
        yield reply_of(
            choices,
            model=model,
            usage=usage or estimated_usage(call, spoken(choices)),
            carry=carry,
            usage_estimated=usage is None,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        """One batchEmbedContents request per 100 inputs, sent at once, each bounded by the call's time;
        the first failure fails the call and stops the other requests."""
        parts = await _all([self._embed_batch(call, texts) for texts in embeddings.batches(call.inputs)])
        return embeddings.joined(call, parts)

    async def _embed_batch(self, call: EmbeddingCall, texts: Sequence[str]) -> embeddings.Batch:
        path = embeddings.batch_path(call.model, api_version=self._settings.api_version)
        body = embeddings.request_body(call.model, texts, dimensions=call.dimensions)
        raw = await self._post(path, body, timeout_s=call.timeout_s, limit=MAX_EMBEDDINGS_BYTES)
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


class _Answer(StreamedAnswer):
    """One candidate of a stream, by its `index`, with its function calls, its text's signature and its
    finish reason."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.calls: list[Any] = []
        self.signature: str | None = None  # its text's, which comes on its last part
        self.finish: str | None = None
        self._answered: tuple[Choice, dict[str, dict[str, str]]] | None = None

    def add(self, candidate: Candidate, *, logprobs: bool) -> list[StreamPart]:
        self.calls += candidate.calls
        self.signature = candidate.text_signature or self.signature
        self.finish = candidate.finish or self.finish
        tokens = candidate.logprobs() if logprobs else ()
        return self.says(candidate.text, candidate.thought, tokens)

    def answer(self, *, logprobs: bool) -> tuple[Choice, dict[str, dict[str, str]]]:
        """The answer, and its function calls' signatures by tool call id; made once, when it finished
        (its calls get new ids each time they are made: its end and the reply must name them alike)."""
        if self._answered is None:
            content = self.content()
            tool_calls, carry = tool_calls_of(self.calls)
            answer = Choice(
                content=content,
                finish_reason=finish_reason(self.finish, text=content, calls=self.calls),
                tool_calls=list(tool_calls) or None,
                thinking=list(self.thought.blocks()) or None,
                logprobs=list(self.tokens) if logprobs else None,
            )
            self._answered = (answer, carry)
        return self._answered
