"""Codex CLI (0.171) on the Responses face, replaying the shapes it sends (captured from `codex exec`
through a custom provider, `wire_api = "responses"`): function tools, its sub-agent tools grouped in a
`namespace` tool, the built-in `web_search` on every request, `store: false` with the whole conversation
sent again each turn (message ids, calls of namespace tools with their `namespace`). For a model in its
own catalog (a GPT-6 name) it sends no `tools` but an `additional_tools` input item ("Responses Lite"):
its top-level tools in the namespace `functions`, among them the custom (free-form) tool `exec`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from switchyard.common.events import FunctionCall, TaskCompleted, TaskFailed, ToolCall
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, responses, responses_render, responses_stream
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.responses_tools import ClientTool
from switchyard.gateway.tenants import Principal
from tests.unit.gateway.test_responses_face import _done

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
OBJECT = {"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"]}
EXEC = {"type": "function", "name": "exec_command", "strict": False, "parameters": {"type": "object"}}
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [
        {"type": "function", "name": "close_agent", "description": "Close an agent.", "parameters": OBJECT},
        {"type": "function", "name": "wait_agent", "strict": False, "parameters": OBJECT},
    ],
}
WEB = {"type": "web_search", "external_web_access": False}
TURN = {
    "type": "message",
    "id": "msg_01a249fd-2be9-74e0-a85a-78ecc8604ef9",
    "role": "user",
    "content": [{"type": "input_text", "text": "Close agent a1."}],
}


def _codex(**fields: Any) -> dict[str, Any]:
    """A Codex request as it sends one (its `client_metadata` trimmed)."""
    return {
        "model": "auto",
        "stream": True,
        "input": [
            {
                "type": "message",
                "id": "msg_9f0489d9-28af-54ec-b988-32e6d5df9e20",
                "role": "developer",
                "content": [
                    {"type": "input_text", "text": "You are a coding agent running in the Codex CLI."}
                ],
            },
            TURN,
        ],
        "tools": [EXEC, AGENTS, WEB],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a249fd-2ba6-70b0-a5de-a299a947d74a",
        "client_metadata": {"thread_id": "01a249fd-2ba6-70b0-a5de-a299a947d74a"},
        **fields,
    }


def _task(body: dict[str, Any]) -> Any:
    parsed = responses.parse_request(orjson.dumps(body), max_prompt_chars=100_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


def test_a_codex_turn_offers_its_function_and_namespace_tools_and_leaves_web_search_out() -> None:
    request = _task(_codex()).request
    assert [t.function.name for t in request.tools or []] == [
        "exec_command",
        "multi_agent_v1__close_agent",
        "multi_agent_v1__wait_agent",
    ]
    close = (request.tools or [])[1].function
    assert (close.description, close.parameters) == ("Close an agent.", OBJECT)
    assert [m.role for m in request.messages] == ["developer", "user"]
    assert responses.tools_of(_codex(), None) == {
        "multi_agent_v1__close_agent": ClientTool("close_agent", "multi_agent_v1"),
        "multi_agent_v1__wait_agent": ClientTool("wait_agent", "multi_agent_v1"),
    }
    assert _task(_codex(tools=[WEB])).request.tools is None  # built-in tools only: none offered


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"tools": [{"type": "namespace", "name": "ns"}]}, "tools.0", "invalid_request"),
        (
            {"tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "local_shell"}]}]},
            "tools.0.tools.0.type",
            "unsupported_parameter",
        ),
        (
            {"tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "function"}]}]},
            "tools.0.tools.0.name",
            "missing_field",
        ),
        (
            {"tools": [{**EXEC, "name": "multi_agent_v1__close_agent"}, AGENTS]},
            "tools.1.tools.0.name",
            "invalid_value",
        ),
        ({"tools": [{"type": "local_shell"}]}, "tools.0.type", "unsupported_parameter"),
        ({"tool_choice": {"type": "web_search"}}, "tool_choice", "invalid_value"),
    ],
)
def test_what_codex_could_send_that_cannot_be_served_is_a_400_naming_it(
    fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        _task(_codex(**fields))
    assert (err.value.status, err.value.param, err.value.code) == (400, param, code)


CLOSE = ToolCall(
    id="call_1", function=FunctionCall(name="multi_agent_v1__close_agent", arguments='{"target":"a1"}')
)
RUN = ToolCall(id="call_2", function=FunctionCall(name="exec_command", arguments='{"cmd":"ls"}'))


async def _nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    return
    yield


async def test_a_call_of_a_namespace_tool_comes_back_with_its_name_and_namespace_whole_and_streamed() -> None:
    task = _task(_codex())
    named = responses.tools_of(_codex(), None)
    done = _done(content="", finish_reason="tool_calls", tool_calls=[CLOSE, RUN])
    body = responses_render.response_body(task, done, created=0, named=named)
    assert [(i["name"], i.get("namespace"), i["call_id"]) for i in body["output"]] == [
        ("close_agent", "multi_agent_v1", "call_1"),
        ("exec_command", None, "call_2"),
    ]
    raw = [
        e
        async for e in responses_stream.stream_events(task, [done], _nothing_more(), timeout_s=5, named=named)
    ]
    events = [orjson.loads(e.split(b"data: ", 1)[1]) for e in raw]
    added, _, args, item_done = events[2:6]
    assert (added["item"]["name"], added["item"]["namespace"]) == ("close_agent", "multi_agent_v1")
    assert args["type"] == "response.function_call_arguments.done" and args["name"] == "close_agent"
    assert item_done["item"] == body["output"][0]
    assert events[-1]["response"]["output"] == body["output"]


def test_the_conversation_codex_sends_again_gives_the_model_its_own_call_back() -> None:
    """Codex stores nothing (`store: false`): the next turn holds the call as it came, with its namespace,
    and its output; the model gets the call under the name it was offered."""
    called = {
        "type": "function_call",
        "name": "close_agent",
        "namespace": "multi_agent_v1",
        "arguments": '{"target":"a1"}',
        "call_id": "call_1",
    }
    result = {"type": "function_call_output", "call_id": "call_1", "output": "closed"}
    body = _codex()
    request = _task({**body, "input": [*body["input"], called, result]}).request
    assert [m.role for m in request.messages] == ["developer", "user", "assistant", "tool"]
    calls = request.messages[2].tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("call_1", "multi_agent_v1__close_agent")]
    chosen = {"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"}
    assert _task(_codex(tool_choice=chosen)).request.tool_choice == {
        "type": "function",
        "function": {"name": "multi_agent_v1__close_agent"},
    }


EXEC_JS = {
    "type": "custom",
    "name": "exec",
    "description": "Run JavaScript code to orchestrate/compose tool calls",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: SOURCE\nSOURCE: /[\\s\\S]+/\n"},
}
LITE_TOOLS = {
    "type": "additional_tools",
    "id": "at_01a24a03-dfed-7291-9264-8e552c087112",
    "role": "developer",
    "tools": [
        {"type": "namespace", "name": "functions", "description": "", "tools": [EXEC_JS, EXEC]},
        {"type": "namespace", "name": "collaboration", "description": "", "tools": AGENTS["tools"]},
    ],
}


def _lite(*turns: dict[str, Any]) -> dict[str, Any]:
    """A "Responses Lite" request as Codex sends one for a model of its catalog."""
    body = _codex(reasoning={"effort": "xhigh", "context": "all_turns"}, text={"verbosity": "low"})
    del body["tools"]
    body["input"] = [LITE_TOOLS, *body["input"], *turns]
    return body


def test_the_tools_of_an_additional_tools_item_are_offered_its_custom_tool_as_a_function_of_its_text() -> (
    None
):
    request = _task(_lite()).request
    assert [t.function.name for t in request.tools or []] == [
        "exec",
        "exec_command",
        "collaboration__close_agent",
        "collaboration__wait_agent",
    ]
    assert [m.role for m in request.messages] == ["developer", "user"]  # the tools item is no turn
    js = (request.tools or [])[0].function
    assert js.description == EXEC_JS["description"] and js.parameters is not None
    assert js.parameters["required"] == ["input"]
    assert "lark grammar:\nstart: SOURCE" in js.parameters["properties"]["input"]["description"]
    assert responses.tools_of(_lite(), None) == {
        "exec": ClientTool("exec", custom=True),  # a top-level tool: its calls have no namespace
        "collaboration__close_agent": ClientTool("close_agent", "collaboration"),
        "collaboration__wait_agent": ClientTool("wait_agent", "collaboration"),
    }
    with pytest.raises(InvalidRequest) as err:
        _task({**_lite(), "input": [{**LITE_TOOLS, "tools": {"type": "function"}}, TURN]})
    assert err.value.param == "input.0.tools"


async def test_a_custom_tools_call_is_a_custom_tool_call_with_its_text_whole_and_streamed() -> None:
    task = _task(_lite())
    named = responses.tools_of(_lite(), None)
    script = ToolCall(id="call_3", function=FunctionCall(name="exec", arguments='{"input": "text(1 + 1)"}'))
    done = _done(content="", finish_reason="tool_calls", tool_calls=[script])
    body = responses_render.response_body(task, done, created=0, named=named)
    assert body["output"] == [
        {
            "id": f"ctc_{task.task_id}_0",
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": "call_3",
            "name": "exec",
            "input": "text(1 + 1)",
        }
    ]
    raw = [
        e
        async for e in responses_stream.stream_events(task, [done], _nothing_more(), timeout_s=5, named=named)
    ]
    events = [orjson.loads(e.split(b"data: ", 1)[1]) for e in raw]
    assert [e["type"] for e in events[2:6]] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert events[4]["input"] == "text(1 + 1)" and events[5]["item"] == body["output"][0]
    unsure = ToolCall(id="call_4", function=FunctionCall(name="exec", arguments="text(2)"))  # not JSON
    [item] = responses_render.response_body(
        task, _done(content="", finish_reason="tool_calls", tool_calls=[unsure]), created=0, named=named
    )["output"]
    assert item["input"] == "text(2)"


def test_a_custom_tool_call_sent_back_is_the_call_of_its_function_and_its_output_the_tools_turn() -> None:
    called = {
        "type": "custom_tool_call",
        "id": "ctc_x",
        "status": "completed",
        "call_id": "call_3",
        "name": "exec",
        "namespace": "functions",
        "input": "text(1 + 1)",
    }
    result = {"type": "custom_tool_call_output", "call_id": "call_3", "output": "2"}
    request = _task(_lite(called, result)).request
    assert [m.role for m in request.messages] == ["developer", "user", "assistant", "tool"]
    [call] = request.messages[2].tool_calls or []
    assert (call.id, call.function.name, orjson.loads(call.function.arguments)) == (
        "call_3",
        "exec",
        {"input": "text(1 + 1)"},
    )
    assert (request.messages[3].tool_call_id, request.messages[3].content) == ("call_3", "2")
    with pytest.raises(InvalidRequest) as err:
        _task(_lite({**called, "input": None}, result))
    assert err.value.param == "input.3.input"
