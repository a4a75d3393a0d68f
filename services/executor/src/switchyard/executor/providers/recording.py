"""Instrumentation as a wrapper: every call that went out is reported with its outcome, latency, time to
first token and usage. Unexpected exceptions from an adapter become `bad_response` errors here, so the
layers above only ever see the taxonomy, and so does an adapter without embeddings asked for them
(`embedder_of`). A stream's bound until its first output (`ProviderCall.first_output_s`) is kept here,
for every adapter, so that its cut is the call's `timeout`, recorded as such.

A timeout at a bound its task's deadline shortened (`ProviderCall.short_bound`: a whole answer's
`timeout_s`, a stream's `first_output_s`) is raised `cut_short` and recorded with the outcome
`cut_short`: the task ran out of time, the provider did not fail, so neither its breaker nor the
router's statistics count it (a client that waits 5 s must not open a breaker every tenant shares)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from opentelemetry.trace import Span, StatusCode

from switchyard.common import tracing
from switchyard.common.errors import ProviderError
from switchyard.common.events import Usage
from switchyard.common.logs import redact
from switchyard.executor.providers.base import (
    OUTPUT,
    EmbeddingCall,
    EmbeddingProvider,
    EmbeddingReply,
    KeepAlive,
    PromptCounted,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    ToolCallDelta,
    estimated_embedding_usage,
    estimated_usage,
    stream_any,
)
from switchyard.executor.providers.errors import provider_error

log = logging.getLogger(__name__)
CUT_SHORT = "cut_short"  # the outcome of a call cut by its task's shortened bound
# OpenTelemetry's names for the providers it knows (`gen_ai.provider.name`); others go by their own.
GENAI_PROVIDERS = {"gemini": "gcp.gemini"}


@dataclass(frozen=True, slots=True)
class CallRecord:
    provider: str
    model: str
    outcome: str  # "ok", "cancelled", "cut_short" or an error kind
    latency_ms: float
    ttft_ms: float | None = None
    error: str | None = None
    usage: Usage | None = None
    # a cancelled call, or one failed after its text began: the prompt and the text received are counted
    usage_estimated: bool = False


OnCall = Callable[[CallRecord], Awaitable[None]]


def embedder_of(provider: object, name: str) -> EmbeddingProvider:
    """`provider` as an embedding provider (every wrapper is one); one without `embed` refuses the call
    before it is sent, so no breaker is charged for it."""
    if isinstance(provider, EmbeddingProvider):
        return provider
    raise provider_error("bad_request", f"{name} serves no embeddings", sent=False)


class RecordingProvider:
    def __init__(
        self,
        inner: Provider,
        *,
        provider: str,
        model: str,
        on_call: OnCall,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._inner = inner
        self._provider = provider
        self._model = model
        self._on_call = on_call
        self._clock = clock

    def _ms(self, since: float) -> float:
        return round((self._clock() - since) * 1000.0, 3)

    async def _report(
        self,
        started: float,
        span: Span | None,
        *,
        error: ProviderError | None = None,
        reply: Reply | EmbeddingReply | None = None,
        ttft_ms: float | None = None,
        spent: Usage | None = None,
    ) -> None:
        """`spent`: a failed stream's estimate of what the provider charged for it (its text so far)."""
        record = CallRecord(
            provider=self._provider,
            model=self._model,
            outcome="ok" if error is None else CUT_SHORT if error.cut_short else error.kind,
            latency_ms=self._ms(started),
            ttft_ms=ttft_ms,
            error=None if error is None else error.message,
            usage=spent if reply is None else reply.usage,
            usage_estimated=spent is not None if reply is None else reply.usage_estimated,
        )
        _end(span, record, reply)
        await self._on_call(record)

    async def _cancelled(
        self, started: float, span: Span | None, usage: Usage, ttft_ms: float | None
    ) -> None:
        """A call stopped by us (a parallel loser, a deadline): the upstream already spent the prompt's
        tokens, and any text it sent, so the call is recorded with an estimate of them (`usage`)."""
        record = CallRecord(
            provider=self._provider,
            model=self._model,
            outcome="cancelled",
            latency_ms=self._ms(started),
            ttft_ms=ttft_ms,
            usage=usage,
            usage_estimated=True,
        )
        _end(span, record, None)
        await self._on_call(record)

    def _span(self, call: ProviderCall, *, stream: bool) -> Span | None:
        """The call's span (OpenTelemetry's GenAI conventions): what was asked of which model, never the
        messages."""
        if not tracing.enabled():
            return None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": GENAI_PROVIDERS.get(self._provider, self._provider),
            "gen_ai.request.model": call.model,
            "switchyard.model": self._model,
            "switchyard.stream": stream,
        }
        for name, value in (
            ("gen_ai.request.max_tokens", call.max_tokens),
            ("gen_ai.request.temperature", call.temperature),
            ("gen_ai.request.top_p", call.top_p),
            ("gen_ai.request.seed", call.seed),
            ("gen_ai.request.choice.count", call.n if call.n > 1 else None),
        ):
            if value is not None:
                attributes[name] = value
        return tracing.start(f"chat {call.model}", attributes=attributes)

    def _embedding_span(self, call: EmbeddingCall) -> Span | None:
        if not tracing.enabled():
            return None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": GENAI_PROVIDERS.get(self._provider, self._provider),
            "gen_ai.request.model": call.model,
            "switchyard.model": self._model,
            "switchyard.embedding.inputs": len(call.inputs),
        }
        if call.dimensions is not None:
            attributes["gen_ai.embeddings.dimension.count"] = call.dimensions
        return tracing.start(f"embeddings {call.model}", attributes=attributes)

    async def _raise(
        self,
        exc: Exception,
        started: float,
        span: Span | None,
        *,
        ttft_ms: float | None = None,
        short_bound: bool = False,
        spent: Usage | None = None,
        call: ProviderCall | None = None,
    ) -> NoReturn:
        """Records a failed call and raises its error: the adapter's own (a timeout of a `short_bound`
        call: as `cut_short`), or `bad_response` for one raised outside the taxonomy (logged with its
        traceback). `spent`: what a stream that failed after its text began was charged (estimated),
        recorded with it so that it is billed (`CallBook`); a timeout of ours after the request went out
        (`abandoned`) with no text read is billed for `call`'s prompt, estimated."""
        if isinstance(exc, ProviderError) and exc.abandoned and spent is None and call is not None:
            spent = estimated_usage(call, "")  # no text read: the prompt the provider had
        if isinstance(exc, ProviderError) and exc.kind == "timeout" and short_bound and not exc.cut_short:
            cut = provider_error(
                "timeout",
                exc.message,
                retryable=exc.retryable,
                retry_after=exc.retry_after,
                cut_short=True,
                abandoned=exc.abandoned,
            )
            await self._report(started, span, error=cut, ttft_ms=ttft_ms, spent=spent)
            raise cut from exc
        if isinstance(exc, ProviderError):
            await self._report(started, span, error=exc, ttft_ms=ttft_ms, spent=spent)
            raise exc
        log.error("%s adapter raised outside the taxonomy", self._provider, exc_info=exc)
        # The exception's words are the adapter's or a library's (`KeyError: 'choices'`): the log has them.
        error = provider_error("bad_response", f"{self._provider}: the answer could not be read")
        await self._report(started, span, error=error, ttft_ms=ttft_ms, spent=spent)
        raise error from exc

    async def request(self, call: ProviderCall) -> Reply:
        started = self._clock()
        span = self._span(call, stream=False)
        try:
            reply = await self._inner.request(call)
        except asyncio.CancelledError:
            await self._cancelled(started, span, estimated_usage(call, ""), None)
            raise
        except Exception as exc:
            await self._raise(exc, started, span, short_bound=call.short_bound, call=call)
        await self._report(started, span, reply=reply)
        return reply

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        started = self._clock()
        span = self._span(call, stream=True)
        ttft_ms: float | None = None
        text: list[str] = []  # the output so far: text, reasoning and tool calls (name and arguments)
        counted: Usage | None = None  # the prompt as the provider counted it at the stream's start
        parts = _first_output_within(
            stream_any(self._inner, call),
            call.first_output_s,
            self._provider,
            short=call.short_bound,
            idle_s=call.idle_s,
        )
        try:
            async for part in parts:
                if isinstance(part, OUTPUT):  # the first token, reasoning or text (or an empty answer's end)
                    text.append(part.text)
                    if isinstance(part, ToolCallDelta):  # billed as output too when the call is cut
                        text += (part.name or "", part.arguments)
                    if ttft_ms is None:
                        ttft_ms = self._ms(started)
                elif isinstance(part, PromptCounted):
                    counted = part.usage
                if isinstance(part, Reply):
                    await self._report(started, span, reply=part, ttft_ms=ttft_ms)
                yield part
        except asyncio.CancelledError:
            await parts.aclose()  # cut between parts (CancelGuard): the upstream's stream closes now
            cut = estimated_usage(call, "".join(text), counted=counted)
            await self._cancelled(started, span, cut, ttft_ms)
            raise
        except Exception as exc:
            # Text came before the failure: the provider charged the prompt and it (as for a cancel).
            said = "".join(text)
            spent = estimated_usage(call, said, counted=counted) if said else None
            await self._raise(exc, started, span, ttft_ms=ttft_ms, spent=spent, call=call)
        finally:
            if span is not None and span.is_recording():  # closed early without a reply (GeneratorExit)
                span.end()

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        inner = embedder_of(self._inner, self._provider)  # no record: nothing was sent
        started = self._clock()
        span = self._embedding_span(call)
        try:
            reply = await inner.embed(call)
        except asyncio.CancelledError:
            await self._cancelled(started, span, estimated_embedding_usage(call), None)
            raise
        except Exception as exc:
            # a timeout after the inputs went out: the provider embedded them (billed, estimated)
            lost = isinstance(exc, ProviderError) and exc.abandoned
            spent = estimated_embedding_usage(call) if lost else None
            await self._raise(exc, started, span, short_bound=call.short_bound, spent=spent)
        await self._report(started, span, reply=reply)
        return reply


async def _first_output_within(
    parts: AsyncGenerator[StreamPart, None],
    seconds: float | None,
    provider: str,
    *,
    short: bool,
    idle_s: float | None = None,
) -> AsyncGenerator[StreamPart, None]:
    """`parts`, failed as a `timeout` when no output came within `seconds` of the call's start (None: no
    such bound; `short`: a bound the task's deadline shortened, its cut `cut_short`), or, after output
    came, none for `idle_s` (the stream's idle limit: the provider's failure, never shorter than the
    executor's own). Each wait is bounded, not the generator's life: a cut must interrupt the
    provider's read, never the consumer's code between parts. A timeout of the provider's own reads
    (`timeout_s`, never shortened for a stream) stays the provider's."""
    loop = asyncio.get_running_loop()
    by = None if seconds is None else loop.time() + seconds
    began = alive = False
    try:
        while True:
            if by is None:
                try:
                    part = await anext(parts)
                except StopAsyncIteration:
                    return
            else:
                timer = asyncio.timeout_at(by)
                try:
                    async with timer:
                        part = await anext(parts)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not timer.expired():  # the provider's own, not this bound's
                        raise
                    if began:  # the provider's failure, unless it said it was at work (our bound then)
                        message = f"the stream sent nothing for {idle_s:g} s (its idle limit)"
                        raise provider_error("timeout", message, cut_short=alive, abandoned=True) from None
                    raise provider_error(
                        "timeout",
                        f"{provider}: no output within {seconds:.3g} s (the task's deadline)",
                        cut_short=short,
                        abandoned=True,
                    ) from None
            yield part
            if isinstance(part, OUTPUT):
                began, alive = True, False
                by = None if idle_s is None else loop.time() + idle_s
            elif isinstance(part, KeepAlive):
                alive = True
    finally:
        await parts.aclose()


def _end(span: Span | None, record: CallRecord, reply: Reply | EmbeddingReply | None) -> None:
    """Ends a call's span with what came back: the answering model, tokens, finish reasons, outcome."""
    if span is None:
        return
    span.set_attribute("switchyard.call.outcome", record.outcome)
    if record.ttft_ms is not None:
        span.set_attribute("switchyard.ttft_ms", record.ttft_ms)
    if record.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", record.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", record.usage.completion_tokens)
        span.set_attribute("switchyard.usage_estimated", record.usage_estimated)
    if isinstance(reply, Reply):
        reasons = [reply.finish_reason, *(c.finish_reason for c in reply.other_choices)]
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
    elif reply is not None:
        span.set_attribute("gen_ai.embeddings.dimension.count", reply.dimensions)
    if reply is not None:
        span.set_attribute("gen_ai.response.model", reply.model)
    if record.outcome != "ok":
        span.set_attribute("error.type", record.outcome)
        span.set_status(StatusCode.ERROR, redact(record.error or record.outcome))
    span.end()
