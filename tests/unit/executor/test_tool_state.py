"""What providers return beside tool calls, kept for the conversation's next turn: by tenant and call id,
for a while, best effort."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage, FunctionCall, ToolCall
from switchyard.executor import tool_state
from switchyard.executor.tool_state import LocalToolStates

pytestmark = pytest.mark.unit


def _turn(*ids: str) -> ChatMessage:
    calls = [ToolCall(id=i, function=FunctionCall(name="f")) for i in ids]
    return ChatMessage(role="assistant", tool_calls=calls)


async def test_kept_state_is_found_by_the_same_tenant_only() -> None:
    states = LocalToolStates()
    await states.save("org_a", {"call_1": {"sig": "a"}})
    assert await states.load("org_a", ["call_1", "call_2"]) == {"call_1": {"sig": "a"}}
    assert await states.load("org_b", ["call_1"]) == {}
    assert tool_state.state_key("org_a", "call_1") != tool_state.state_key("org_b", "call_1")


async def test_kept_state_expires_and_the_oldest_goes_first() -> None:
    states = LocalToolStates(keep_s=0.0)
    await states.save("org_a", {"call_1": {"sig": "a"}})
    assert await states.load("org_a", ["call_1"]) == {}
    small = LocalToolStates(size=2)
    for n in range(3):
        await small.save("org_a", {f"call_{n}": {"sig": str(n)}})
    assert set(await small.load("org_a", ["call_0", "call_1", "call_2"])) == {"call_1", "call_2"}


async def test_the_latest_tool_calls_of_the_history_are_looked_up() -> None:
    history = [ChatMessage(role="user", content="go"), _turn("a", "b"), _turn(*(f"c{n}" for n in range(70)))]
    ids = tool_state.tool_call_ids(history)
    assert len(ids) == tool_state.MOST_LOADED and ids[-1] == "c69" and "a" not in ids
    assert tool_state.tool_call_ids([ChatMessage(role="user", content="no tools")]) == []


class Broken:
    async def load(self, tenant_id: str, call_ids: list[str]) -> dict[str, dict[str, str]]:
        raise ConnectionError("KV down")

    async def save(self, tenant_id: str, states: object) -> None:
        raise ConnectionError("KV down")


async def test_a_failing_store_costs_the_state_never_the_task(caplog: pytest.LogCaptureFixture) -> None:
    history = [_turn("a")]
    assert await tool_state.carried(Broken(), "org_a", history) == {}
    await tool_state.keep(Broken(), "org_a", {"a": {"sig": "x"}})  # does not raise
    assert caplog.text.count("KV down") == 2 and "sig" not in caplog.text and "x\n" not in caplog.text
    assert await tool_state.carried(None, "org_a", history) == {}
