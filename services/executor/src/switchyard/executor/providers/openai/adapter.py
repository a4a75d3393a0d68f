"""The OpenAI adapter: chat completions for OpenAI itself and every server that speaks its protocol,
OpenAI's Responses API for the calls to OpenAI that chat completions cannot carry (`responses.py`), and
embeddings (`embeddings.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from switchyard.common.errors import ProviderError
from switchyard.common.events import Choice
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    ProviderCall,
    Reply,
    StreamedAnswer,
    StreamPart,
    estimated_usage,
    reply_of,
    spoken,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.http import (
    DEFAULT_TIMEOUT_S,
    MAX_EMBEDDINGS_BYTES,
    HttpProvider,
    finish_body,
    parse_json,
    sse_events,
    transport_errors,
)
from switchyard.executor.providers.openai import embeddings, responses
from switchyard.executor.providers.openai.config import OpenAISettings
from switchyard.executor.providers.openai.models import ModelRules, rules_for
from switchyard.executor.providers.openai.responses import (
    parse_response,
    response_parts,
    responses_body,
    uses_responses,
)
from switchyard.executor.providers.openai.wire import (
    ToolCallDeltas,
    choice_logprobs,
    error_from_body,
    parse_reply,
    reasoning_of,
    request_body,
    usage_of,
)
from switchyard.executor.providers.tool_names import PLAIN

NAME = "openai"
PATH = "chat/completions"


class OpenAIProvider(HttpProvider):
    name = NAME
    function_names = PLAIN  # letters, digits, `_` and `-` (`tool_names.py`)

    def __init__(
        self,
        settings: OpenAISettings,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=settings.resolved_base_url(), timeout_s=timeout_s, client=client, secret=settings.api_key
        )
        self._settings = settings
        self._openai_itself = settings.is_openai_itself()
        self.carries = self._openai_itself  # encrypted reasoning, through the Responses API only

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        if self._settings.org_id:
            headers["OpenAI-Organization"] = self._settings.org_id
        if self._settings.project_id:
            headers["OpenAI-Project"] = self._settings.project_id
        return headers

    def _rules(self, call: ProviderCall) -> ModelRules | None:
        return rules_for(call.model) if self._openai_itself else None

    def _path(self, call: ProviderCall, *, stream: bool) -> str:
        return responses.PATH if uses_responses(call, self._rules(call)) else PATH

    def _body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        rules = self._rules(call)
        if rules is not None and uses_responses(call, rules):
            return responses_body(call, stream=stream, rules=rules)
        return request_body(call, stream=stream, openai_itself=self._openai_itself)

    def _error(self, status: int, raw: bytes, headers: httpx.Headers) -> ProviderError:
        return error_from_body(status, raw, headers)

    def _reply(self, raw: bytes, call: ProviderCall) -> Reply:
        if uses_responses(call, self._rules(call)):
            return parse_response(raw, call)
        return parse_reply(raw, call)

    def _parts(self, response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]:
        if uses_responses(call, self._rules(call)):
            return response_parts(response, call)
        return self._chunks(response, call)

    async def _chunks(self, response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]:
        """Each chunk's choices advance their answers by `index` (a call for several, `n`, gets them
        interleaved); each answer's deltas go out under its index as they come, and, of several, its end
        with the chunk that carries its finish reason."""
        answers: dict[int, _Answer] = {0: _Answer(0)}
        model = call.model
        usage = None
        done = False
        async with transport_errors(NAME):
            events = sse_events(response)
            async for event in events:
                if event.data.strip() == "[DONE]":
                    done = True
                    break
                chunk = parse_json(event.data.encode(), what="a stream chunk")
                if not isinstance(chunk, dict):
                    raise provider_error("bad_response", f"stream chunk is not an object: {event.data[:200]}")
                if "error" in chunk:
                    raise error_from_body(500, event.data.encode())
                model = str(chunk.get("model") or model)
                usage = usage_of(chunk.get("usage")) or usage
                for choice in chunk.get("choices") or []:
                    index = choice.get("index", 0) if isinstance(choice, dict) else None
                    if not isinstance(index, int) or not 0 <= index < call.n:
                        continue  # not an answer asked for
                    answer = answers.get(index) or answers.setdefault(index, _Answer(index))
                    for part in answer.add(choice, logprobs=call.logprobs):
                        yield part
                    if call.n > 1 and answer.finish_reason is not None and not answer.ended:
                        for part in answer.ends(answer.answer(logprobs=call.logprobs)):
                            yield part  # its finish reason came: it ends now, the others go on
        if not done and any(a.finish_reason is None for a in answers.values()):
            raise provider_error("network", "openai: the stream ended before it finished")
        if done:
            await finish_body(events)
        if len(answers) < call.n:
            raise provider_error("bad_response", f"{call.n} choices asked for, {len(answers)} streamed")
        ordered = [answers[i] for i in range(call.n)]
        for answer in ordered:
            for part in answer.end():
                yield part
        choices = [a.answer(logprobs=call.logprobs) for a in ordered]
        yield reply_of(
            choices,
            model=model,
            usage=usage or estimated_usage(call, spoken(choices)),
            usage_estimated=usage is None,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        body = embeddings.request_body(call, base64=self._openai_itself)
        raw = await self._post(embeddings.PATH, body, timeout_s=call.timeout_s, limit=MAX_EMBEDDINGS_BYTES)
        return embeddings.parse_reply(raw, call)

    async def aclose(self) -> None:
        await self._client.aclose()


class _Answer(StreamedAnswer):
    """One answer of a stream, by its `index`, with its tool calls and finish reason."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.tools = ToolCallDeltas(index)
        self.finish_reason: str | None = None
        self.refused: list[str] = []  # its refusal's pieces (OpenAI streams a refusal as `delta.refusal`)

    def add(self, choice: dict[str, Any], *, logprobs: bool) -> list[StreamPart]:
        """A streamed choice of this answer: its reasoning, then its text and its tool calls' pieces, as
        deltas (the reasoning's block ends before a call, as before text); a refusal is kept for its end
        (the reply's `refusal`), never sent as text."""
        delta = choice.get("delta") or {}
        if isinstance(delta.get("refusal"), str):
            self.refused.append(delta["refusal"])
        tokens = choice_logprobs(choice, self.choice) if logprobs else ()
        parts = self.says(delta.get("content") or "", reasoning_of(delta), tokens)
        calls = self.tools.add(delta.get("tool_calls"))
        if calls:
            parts += [*self.thought.end(), *calls]
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return parts

    def end(self) -> list[StreamPart]:
        """As a text answer's end, then the calls that streamed no arguments (whole: `{}`)."""
        return [*super().end(), *self.tools.end()]

    def answer(self, *, logprobs: bool) -> Choice:
        return Choice(
            content=self.content(),
            finish_reason=self.finish_reason or "stop",
            tool_calls=list(self.tools.calls()) or None,
            thinking=list(self.thought.blocks()) or None,
            logprobs=list(self.tokens) if logprobs else None,
            refusal="".join(self.refused) or None,
        )
