"""Function names with Gemini's `.` and `:` (which the Gemini face takes, as Gemini's API does) against
each HTTP adapter's provider, over HTTP to a local server that speaks its wire protocol and refuses what
the real API refuses: OpenAI and Anthropic take only `[a-zA-Z0-9_-]` and refused the whole request (a
400), now the names go plain and the model's calls come back under the client's names; Gemini gets them
as they are."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common.events import ChatMessage, FunctionCall, FunctionSpec, ToolCall, ToolSpec
from switchyard.executor.providers.base import ProviderCall, Reply, StreamingProvider, ToolCallDelta
from tests.integration.executor.test_adapters import Upstream, adapter, servers, upstream

pytestmark = pytest.mark.integration
__all__ = ["adapter", "servers", "upstream"]  # fixtures

NAMES = ("ns.get_weather", "mcp:read", "ns_get_weather")  # the third: what the first would become
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CONVERSATION = (
    ChatMessage(role="user", content="Read the notes, then the weather in Paris?"),
    ChatMessage(
        role="assistant",
        content=None,
        tool_calls=[ToolCall(id="call_1", function=FunctionCall(name="mcp:read", arguments='{"city": "x"}'))],
    ),
    ChatMessage(role="tool", tool_call_id="call_1", content="notes: none"),
)


def sent_names(upstream: Upstream) -> list[str]:
    body: dict[str, Any] = upstream.sent("tool-call").body
    if upstream.name == "openai":
        return [t["function"]["name"] for t in body["tools"]]
    if upstream.name == "anthropic":
        return [t["name"] for t in body["tools"]]
    return [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]


@pytest.mark.parametrize("streamed", [False, True])
async def test_dotted_and_colon_names_reach_every_provider_and_come_back_as_declared(
    upstream: Upstream, adapter: StreamingProvider, streamed: bool
) -> None:
    tools = tuple(ToolSpec(function=FunctionSpec(name=n, parameters=PARAMETERS)) for n in NAMES)
    call = ProviderCall(
        model="tool-call",
        messages=CONVERSATION,
        max_tokens=50,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "ns.get_weather"}},
    )
    named: list[str] = []
    if streamed:
        final = None
        async for part in adapter.stream(call):
            if isinstance(part, ToolCallDelta) and part.name is not None:
                named.append(part.name)
            elif isinstance(part, Reply):
                final = part
        assert final is not None
    else:
        final = await adapter.request(call)
    assert [c.function.name for c in final.tool_calls] == ["ns.get_weather"]
    # the streamed call's first piece names it (Gemini's adapter gives its calls whole, in the reply)
    assert named == (["ns.get_weather"] if streamed and upstream.name != "gemini" else [])
    sent = sent_names(upstream)
    if upstream.name == "gemini":
        assert sent == list(NAMES)
    else:
        assert sent == ["ns_get_weather_2", "mcp_read", "ns_get_weather"]


LONG = "mcp__filesystem__" + "read_" * 20  # 117 characters: Anthropic's tools take up to 128


@pytest.mark.parametrize("streamed", [False, True])
async def test_names_gemini_refuses_reach_it_renamed_and_come_back_as_declared(
    servers: dict[str, Upstream], streamed: bool
) -> None:
    """What the OpenAI and Anthropic faces take and Gemini refuses (a digit first; past 64 characters)."""
    upstream = servers["gemini"]
    names = (LONG, "1st_tool")
    tools = tuple(ToolSpec(function=FunctionSpec(name=n, parameters=PARAMETERS)) for n in names)
    call = ProviderCall(model="tool-call", messages=CONVERSATION[:1], max_tokens=50, tools=tools)
    adapter = upstream.adapter()
    try:
        if streamed:
            final = [p async for p in adapter.stream(call) if isinstance(p, Reply)][-1]
        else:
            final = await adapter.request(call)
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    assert [c.function.name for c in final.tool_calls] == [LONG]
    assert sent_names(upstream) == [LONG[:64], "_1st_tool"]
