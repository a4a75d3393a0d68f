"""The Anthropic Messages adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from switchyard.common.errors import ProviderError
from switchyard.common.events import Usage
from switchyard.executor.providers.anthropic.config import API_VERSION, AnthropicSettings
from switchyard.executor.providers.anthropic.thinking import BLOCK_BINDING_BETA
from switchyard.executor.providers.anthropic.wire import (
    error_from_body,
    finish_reason,
    parse_reply,
    request_body,
    stop_sequence,
    thinking_block,
    tool_use,
    usage_of,
)
from switchyard.executor.providers.base import (
    KeepAlive,
    PromptCounted,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.http import (
    DEFAULT_TIMEOUT_S,
    HttpProvider,
    parse_json,
    sse_events,
    transport_errors,
)
from switchyard.executor.providers.tool_names import PLAIN

NAME = "anthropic"
PATH = "v1/messages"


class AnthropicProvider(HttpProvider):
    name = NAME
    function_names = PLAIN  # letters, digits, `_` and `-` (`tool_names.py`)
    # Anthropic's input-token rate limits leave out tokens read from the prompt cache (current models),
    # so our tpm buckets settle a call without them (`LimitGuard`)
    limits_count_cache_reads = False

    def __init__(
        self,
        settings: AnthropicSettings,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=settings.resolved_base_url(), timeout_s=timeout_s, client=client, secret=settings.api_key
        )
        self._settings = settings

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if self._settings.api_key is not None:
            headers["x-api-key"] = self._settings.api_key.get_secret_value()
        return headers

    def _body_headers(self, body: dict[str, Any]) -> dict[str, str]:
        thinking = body.get("thinking") or {}
        return {"anthropic-beta": BLOCK_BINDING_BETA} if "block_binding" in thinking else {}

    def _path(self, call: ProviderCall, *, stream: bool) -> str:
        return PATH

    def _body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        return request_body(call, stream=stream, default_max_tokens=self._settings.default_max_tokens)

    def _error(self, status: int, raw: bytes, headers: httpx.Headers) -> ProviderError:
        return error_from_body(status, raw, headers)

    def _reply(self, raw: bytes, call: ProviderCall) -> Reply:
        return parse_reply(raw, call)

    async def _parts(self, response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]:
        """message_start, content_block_start/delta/stop..., message_delta, message_stop (pings and
        unknown event types are skipped, as Anthropic asks clients to do). A thinking block's text is
        passed on as it comes, its signature when the block stops; a redacted one when it starts. A
        tool_use block goes on as a call's pieces: its id and name when it starts, its input's JSON as
        it streams (the whole input when the block stops, if none streamed)."""
        text: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}  # tool_use blocks by index
        thoughts: dict[int, dict[str, Any]] = {}  # thinking and redacted_thinking blocks by index
        partial: dict[int, list[str]] = {}
        usage = Usage()
        model = call.model
        stop_reason: Any = None
        stopped_by: str | None = None
        stopped = False
        async with transport_errors(NAME):
            async for event in sse_events(response):
                data = parse_json(event.data.encode(), what=f"a {event.event} event")
                if not isinstance(data, dict):
                    raise provider_error("bad_response", f"{event.event} event is not an object")
                kind = data.get("type", event.event)
                if kind == "error":
                    raise error_from_body(500, event.data.encode())
                if kind == "ping":
                    yield KeepAlive()
                elif kind == "message_start":
                    message = data.get("message") or {}
                    model = str(message.get("model") or model)
                    usage = usage_of(message.get("usage"), usage)
                    if usage.prompt_tokens:
                        yield PromptCounted(usage)
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    index = int(data.get("index", 0))
                    if block.get("type") == "tool_use":
                        blocks[index] = block
                        if block.get("id") and block.get("name"):  # else the reply fails (`tool_use`)
                            yield ToolCallDelta(len(blocks) - 1, "", str(block["id"]), str(block["name"]))
                    elif block.get("type") == "thinking":
                        thoughts[index] = {"type": "thinking", "thinking": "", "signature": ""}
                    elif block.get("type") == "redacted_thinking":
                        thoughts[index] = thinking_block(block).model_dump(exclude_none=True)
                        yield ThinkingDelta(redacted=thoughts[index]["data"])
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    index = int(data.get("index", 0))
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        text.append(delta["text"])
                        yield TextDelta(delta["text"])
                    elif delta.get("type") == "input_json_delta":
                        piece = str(delta.get("partial_json") or "")
                        partial.setdefault(index, []).append(piece)
                        if piece and index in blocks:
                            yield ToolCallDelta(list(blocks).index(index), piece)
                    elif delta.get("type") == "thinking_delta" and index in thoughts:
                        thoughts[index]["thinking"] += str(delta.get("thinking") or "")
                        if delta.get("thinking"):
                            yield ThinkingDelta(text=str(delta["thinking"]))
                    elif delta.get("type") == "signature_delta" and index in thoughts:
                        thoughts[index]["signature"] += str(delta.get("signature") or "")
                elif kind == "content_block_stop":
                    index = int(data.get("index", 0))
                    thought = thoughts.get(index)
                    if thought is not None and thought["type"] == "thinking":
                        yield ThinkingDelta(signature=thought["signature"])
                    named = index in blocks and blocks[index].get("id") and blocks[index].get("name")
                    if named and not "".join(partial.get(index, [])):
                        whole = tool_use(blocks[index]).function.arguments  # an input given whole, or {}
                        yield ToolCallDelta(list(blocks).index(index), whole)
                elif kind == "message_delta":
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                    stopped_by = stop_sequence(data.get("delta")) or stopped_by
                    usage = usage_of(data.get("usage"), usage)
                elif kind == "message_stop":
                    stopped = True
                    break
        if not stopped:
            raise provider_error("network", "anthropic: the stream ended before message_stop")
        calls = tuple(tool_use(b, arguments="".join(partial.get(i, []))) for i, b in sorted(blocks.items()))
        yield Reply(
            content="".join(text),
            finish_reason=finish_reason(stop_reason),
            model=model,
            usage=usage,
            tool_calls=calls,
            stop_sequence=stopped_by,
            thinking=tuple(thinking_block(b) for _, b in sorted(thoughts.items())),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
