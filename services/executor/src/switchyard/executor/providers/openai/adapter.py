"""The OpenAI chat-completions adapter: OpenAI itself and every server that speaks its protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from switchyard.executor.providers.base import ProviderCall, Reply, StreamPart, TextDelta, estimated_usage
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.http import (
    DEFAULT_TIMEOUT_S,
    make_client,
    parse_json,
    read_error_body,
    request_timeout,
    sse_events,
    time_limit,
    transport_errors,
)
from switchyard.executor.providers.openai.config import OpenAISettings
from switchyard.executor.providers.openai.wire import (
    ToolCallDeltas,
    error_from_body,
    parse_reply,
    request_body,
    usage_of,
)

NAME = "openai"
PATH = "chat/completions"


class OpenAIProvider:
    def __init__(
        self,
        settings: OpenAISettings,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._client = client or make_client(base_url=settings.resolved_base_url(), timeout_s=timeout_s)
        self._max_completion_tokens = settings.is_openai_itself()

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self._settings.resolved_base_url()!r})"

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        if self._settings.org_id:
            headers["OpenAI-Organization"] = self._settings.org_id
        if self._settings.project_id:
            headers["OpenAI-Project"] = self._settings.project_id
        return headers

    async def request(self, call: ProviderCall) -> Reply:
        body = request_body(call, stream=False, max_completion_tokens=self._max_completion_tokens)
        async with transport_errors(NAME), time_limit(call.timeout_s):
            response = await self._client.post(
                PATH,
                json=body,
                headers=self._headers(stream=False),
                timeout=request_timeout(call.timeout_s, self._timeout_s),
            )
            if response.status_code != 200:
                raise error_from_body(response.status_code, response.content, response.headers)
            return parse_reply(response.content, call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        body = request_body(call, stream=True, max_completion_tokens=self._max_completion_tokens)
        request = self._client.build_request(
            "POST",
            PATH,
            json=body,
            headers=self._headers(stream=True),
            timeout=request_timeout(call.timeout_s, self._timeout_s),
        )
        async with transport_errors(NAME):
            response = await self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                async with transport_errors(NAME):
                    raw = await read_error_body(response)
                raise error_from_body(response.status_code, raw, response.headers)
            async for part in self._parts(response, call):
                yield part
        finally:
            await response.aclose()

    async def _parts(self, response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]:
        text: list[str] = []
        tools = ToolCallDeltas()
        finish_reason: str | None = None
        model = call.model
        usage = None
        done = False
        async with transport_errors(NAME):
            async for event in sse_events(response):
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
                    if choice.get("index", 0) != 0:
                        continue
                    tools.add((choice.get("delta") or {}).get("tool_calls"))
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        text.append(delta)
                        yield TextDelta(delta)
                    finish_reason = choice.get("finish_reason") or finish_reason
        if not done and finish_reason is None:
            raise provider_error("network", "openai: the stream ended before it finished")
        content = "".join(text)
        yield Reply(
            content=content,
            finish_reason=finish_reason or "stop",
            model=model,
            usage=usage or estimated_usage(call, content),
            tool_calls=tools.calls(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
