"""Test doubles for the provider port, shipped beside it so every test (and every service test) uses the
same ones. No network, no model."""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from switchyard.common.errors import ProviderError
from switchyard.common.events import TokenLogprob, TopLogprob, Usage
from switchyard.executor.providers.base import (
    AnswerEnd,
    EmbeddingCall,
    EmbeddingReply,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
)
from switchyard.executor.providers.errors import ErrorKind, provider_error


def reply(
    text: str,
    *,
    model: str = "scripted",
    finish_reason: str = "stop",
    logprobs: Sequence[TokenLogprob] | None = None,
) -> Reply:
    """`logprobs`: the answer's tokens (`tokens(text)`), their texts in order making `text`."""
    if logprobs is not None and "".join(t.token for t in logprobs) != text:
        raise ValueError("a scripted reply's tokens spell its text")
    return Reply(
        content=text,
        finish_reason=finish_reason,
        model=model,
        usage=Usage(prompt_tokens=3, completion_tokens=len(text.split())),
        logprobs=None if logprobs is None else tuple(logprobs),
    )


def tokens(text: str, *, top: int = 0, start: float = -0.25) -> tuple[TokenLogprob, ...]:
    """`text` as tokens (its words, each with the spaces around it), the i-th of log probability
    `start` * (i + 1), with `top` alternatives (`alt0`, `alt1`...) less likely each."""
    out = []
    for index, word in enumerate(_words(text)):
        logprob = start * (index + 1)
        alternatives = [TopLogprob(token=f"alt{k}", logprob=logprob - k - 1) for k in range(top)]
        out.append(TokenLogprob(token=word, logprob=logprob, top_logprobs=alternatives))
    return tuple(out)


def fails(kind: ErrorKind, message: str = "", *, retry_after: float | None = None) -> ProviderError:
    return provider_error(kind, message or f"scripted {kind}", retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class BreaksAfter:
    """A stream that sends `text` and then fails with `error` (a plain request fails at once)."""

    text: str
    error: ProviderError


Step = Reply | ProviderError | BreaksAfter


class ScriptedProvider:
    """Each call plays the next step of the script; the last step repeats. Streams send word by word, or,
    for a reply with its tokens' log probabilities, token by token (each delta with its token); a reply
    with several answers (`other_choices`) streams them interleaved, a word (or token) of each in turn,
    each one's end after its last word."""

    def __init__(self, *steps: Step) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        self._steps = list(steps)
        self.calls: list[ProviderCall] = []

    def _step(self, call: ProviderCall) -> Step:
        self.calls.append(call)
        return self._steps.pop(0) if len(self._steps) > 1 else self._steps[0]

    async def request(self, call: ProviderCall) -> Reply:
        step = self._step(call)
        if isinstance(step, Reply):
            return step
        raise step.error if isinstance(step, BreaksAfter) else step

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        step = self._step(call)
        if isinstance(step, ProviderError):
            raise step
        if isinstance(step, BreaksAfter):
            for word in _words(step.text):
                yield TextDelta(word)
            raise step.error
        answers = [_deltas(step.content, step.logprobs, 0)]
        answers += [_deltas(c.content, c.logprobs, i) for i, c in enumerate(step.other_choices, start=1)]
        if step.other_choices:  # each of several ends after its last delta
            answers[0].append(AnswerEnd(0, step.finish_reason, step.tool_calls))
            for i, other in enumerate(step.other_choices, start=1):
                answers[i].append(AnswerEnd.of(i, other))
        for turn in itertools.zip_longest(*answers):
            for delta in turn:
                if delta is not None:
                    yield delta
        yield step


def _deltas(content: str, tokens: Sequence[TokenLogprob] | None, choice: int) -> list[StreamPart]:
    if tokens is not None:
        return [TextDelta(token.token, (token,), choice) for token in tokens]
    return [TextDelta(word, (), choice) for word in _words(content)]


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def embedding_reply(
    count: int, dimensions: int = 4, *, model: str = "scripted", prompt_tokens: int | None = None
) -> EmbeddingReply:
    """`count` vectors of `dimensions` float32 numbers, row i holding i + 1 everywhere; two tokens an
    input unless told."""
    rows = (struct.pack(f"<{dimensions}f", *([float(i + 1)] * dimensions)) for i in range(count))
    tokens = 2 * count if prompt_tokens is None else prompt_tokens
    return EmbeddingReply(
        vectors=b"".join(rows),
        count=count,
        dimensions=dimensions,
        model=model,
        usage=Usage(prompt_tokens=tokens),
    )


EmbeddingStep = EmbeddingReply | ProviderError


class ScriptedEmbedder:
    """An embedding model: each call plays the next step of the script; the last step repeats. Asked for
    a chat answer it refuses, unsent, as a model that gives none would."""

    def __init__(self, *steps: EmbeddingStep) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        self._steps = list(steps)
        self.calls: list[EmbeddingCall] = []

    async def request(self, call: ProviderCall) -> Reply:
        raise provider_error("bad_request", "a scripted embedder gives no chat answers", sent=False)

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        self.calls.append(call)
        step = self._steps.pop(0) if len(self._steps) > 1 else self._steps[0]
        if isinstance(step, ProviderError):
            raise step
        return step
