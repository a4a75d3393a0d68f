"""What Python LLM frameworks put on the wire, replayed through the real pipeline (`tools_stack`: the
gateway, router and executor as processes on a real nats-server, the provider a local server speaking
OpenAI's protocol). The bodies are the ones LangChain (langchain-openai 1.8), pydantic-ai 2.38 and
instructor 1.17 sent in a run against an OpenAI stand-in, so CI needs none of them: structured output by
a strict JSON schema or a forced (strict) tool, tools without parallel calls, a streamed tool call with
the usage asked for in the last chunk. And a model's refusal, which each of them reads apart from the
answer (LangChain raises OpenAIRefusalError, pydantic-ai ContentFilterError, instructor stops retrying)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchyard.common.events import TaskSubmitted
from tests.integration.executor.tools_stack import Stack, anthropic_client, classifier, openai_client, stack
from tests.support.fake_openai import PARALLEL, PARALLEL_CALLS, REFUSAL

pytestmark = pytest.mark.integration
__all__ = ["classifier", "stack"]  # fixtures

CITY = {
    "description": "A city and its population.",
    "properties": {
        "name": {"description": "the city's name", "title": "Name", "type": "string"},
        "population": {"title": "Population", "type": "integer"},
        "country": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Country"},
    },
    "required": ["name", "population", "country"],
    "title": "City",
    "type": "object",
    "additionalProperties": False,
}
ASK = [{"content": "Biggest city in France?", "role": "user"}]
# ChatOpenAI(...).with_structured_output(City, method="json_schema", strict=True)
LANGCHAIN_JSON_SCHEMA = {
    "messages": ASK,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"schema": CITY, "name": "City", "strict": True},
    },
    "stream": False,
}
# ChatOpenAI(...).bind_tools([get_weather], tool_choice="any", parallel_tool_calls=False, strict=True)
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "type": "object",
        "additionalProperties": False,
    },
    "strict": True,
}
LANGCHAIN_TOOLS = {
    "messages": [{"content": "Weather in Paris?", "role": "user"}],
    "parallel_tool_calls": False,
    "stream": False,
    "tool_choice": "required",
    "tools": [{"type": "function", "function": WEATHER}],
}
# instructor.from_openai(client, mode=Mode.TOOLS): the output model as a forced function
INSTRUCTOR_TOOLS = {
    "messages": ASK,
    "tool_choice": {"type": "function", "function": {"name": "City"}},
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "City",
                "description": (
                    "Correctly extracted `City` with all the required parameters with correct types"
                ),
                "parameters": {**CITY, "required": ["name", "population"]},
            },
        }
    ],
}
# Agent(OpenAIChatModel(...), output_type=City).run_stream(...): the output tool, required, streamed
PYDANTIC_AI_STREAMED_OUTPUT = {
    "messages": ASK,
    "stream": True,
    "stream_options": {"include_usage": True},
    "tool_choice": "required",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "final_result",
                "description": "The final response which ends this conversation",
                "parameters": {**CITY, "required": ["name", "population"]},
            },
        }
    ],
}


async def _post(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    """The body as sent (the client's own JSON, not an SDK's rendering of it); the test's loop plays the
    classifier, so the request must not block it."""
    headers = {"authorization": f"Bearer {stack.org.keys['member']}"}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{stack.base}/v1/chat/completions", json=body, headers=headers)


def _chunks(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


async def test_the_frameworks_structured_output_and_tool_requests_reach_the_model_as_sent(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    answer = await _post(stack, {**LANGCHAIN_JSON_SCHEMA, "model": "oai/tool-call"})
    assert answer.status_code == 200 and answer.json()["choices"][0]["finish_reason"] == "stop"
    assert stack.openai.requests[-1].body["response_format"] == LANGCHAIN_JSON_SCHEMA["response_format"]

    for body in (LANGCHAIN_TOOLS, INSTRUCTOR_TOOLS):
        reply = await _post(stack, {**body, "model": "oai/tool-call"})
        assert reply.status_code == 200, reply.text
        choice = reply.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        [call] = choice["message"]["tool_calls"]
        assert call["function"]["name"] == body["tools"][0]["function"]["name"]  # type: ignore[index]
        sent = stack.openai.requests[-1].body
        assert (sent["tools"], sent["tool_choice"]) == (body["tools"], body["tool_choice"])
        assert sent.get("parallel_tool_calls") == body.get("parallel_tool_calls")

    streamed = await _post(stack, {**PYDANTIC_AI_STREAMED_OUTPUT, "model": "oai/tool-call"})
    chunks = _chunks(streamed)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    pieces = [t for d in deltas for t in d["delta"].get("tool_calls") or []]
    # as the provider streamed it: the call's id and name with its first arguments, then the rest of its
    # arguments in pieces (which instructor's and pydantic-ai's partial output parse as they grow), each once
    assert [(t["index"], t.get("id") is not None, t["function"].get("name")) for t in pieces] == [
        (0, True, "final_result"),
        (0, False, None),
    ]
    arguments = "".join(t["function"]["arguments"] for t in pieces)
    assert json.loads(arguments) == {"city": "Paris"}
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0  # usage last


async def test_a_refusal_reaches_the_client_as_openai_gives_it(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Before, the refusal was dropped: the client got `content: ""` and no `refusal`, which LangChain
    failed to parse ("does not have a 'parsed' field nor a 'refusal' field") and pydantic-ai asked again."""
    client = openai_client(stack)
    fmt = LANGCHAIN_JSON_SCHEMA["response_format"]
    reply = await client.chat.completions.create(
        model="openai/refusal",
        messages=ASK,  # type: ignore[arg-type]
        response_format=fmt,  # type: ignore[arg-type]
    )
    message = reply.choices[0].message
    assert (message.content, message.refusal, reply.choices[0].finish_reason) == (None, REFUSAL, "stop")

    stream = await client.chat.completions.create(
        model="openai/refusal",
        messages=ASK,  # type: ignore[arg-type]
        response_format=fmt,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    refused, text, usage = "", "", None
    async for chunk in stream:
        for choice in chunk.choices:
            refused += choice.delta.refusal or ""
            text += choice.delta.content or ""
        usage = chunk.usage or usage
    assert (refused, text) == (REFUSAL, "") and usage is not None


async def test_a_context_window_a_provider_refused_is_a_context_overflow_to_the_client(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """LangChain raises ContextOverflowError on `context_length_exceeded` (OpenAI's code) and on Anthropic's
    "prompt is too long"; Claude Code compacts on the latter. Before, a provider's refusal came as
    `provider_context_too_long` in the provider's words, which none of them recognised."""
    with pytest.raises(openai.BadRequestError) as refused:
        await openai_client(stack).chat.completions.create(
            model="openai/error-context",
            messages=ASK,  # type: ignore[arg-type]
        )
    assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "messages")
    with pytest.raises(anthropic.BadRequestError) as said:
        await anthropic_client(stack).messages.create(
            model="openai/error-context",
            max_tokens=50,
            messages=ASK,  # type: ignore[arg-type]
        )
    error = said.value.body["error"]  # type: ignore[index]
    assert error["message"].startswith("prompt is too long: 130412 tokens > 128000 maximum (every candidate")


async def test_the_anthropic_sdk_streams_a_calls_input_as_the_model_streams_it(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """The provider's argument pieces reach `messages.stream()` as `input_json` events, one each, and its
    final message holds the whole input (Claude Code shows a Write's file as it streams so)."""
    tool = {"name": "get_weather", "input_schema": WEATHER["parameters"]}
    async with anthropic_client(stack).messages.stream(
        model="oai/tool-call",
        max_tokens=50,
        messages=ASK,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        pieces = [event.partial_json async for event in stream if event.type == "input_json"]
        final = await stream.get_final_message()
    assert pieces == ['{"city"', ': "Paris"}']
    [call] = final.content
    assert call.type == "tool_use" and (call.id, call.name) == ("call_fake_1", "get_weather")
    assert call.input == {"city": "Paris"} and final.stop_reason == "tool_use"


async def test_parallel_calls_streamed_oddly_add_up_on_every_face_to_the_calls_sent_whole(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Three calls a compatible server streams interleaved by index, the first's name in two pieces, the
    last with no arguments: what each SDK adds up from the stream is what the same answer not streamed
    holds (the chat face's `tool_calls`, the Anthropic face's `tool_use` blocks, the Responses face's
    `function_call` items and their argument deltas)."""
    ask = [{"role": "user", "content": PARALLEL}]
    chat = openai_client(stack).chat.completions
    tools = [{"type": "function", "function": WEATHER}]
    whole = await chat.create(model="oai/tool-call", messages=ask, tools=tools)  # type: ignore[arg-type]
    expected = [
        (c.id, c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls or []
    ]
    assert expected == [(i, "get_weather", a) for i, a in PARALLEL_CALLS]
    async with chat.stream(model="oai/tool-call", messages=ask, tools=tools) as stream:  # type: ignore[arg-type]
        streamed = (await stream.get_final_completion()).choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in streamed] == expected

    messages = anthropic_client(stack).messages
    tool = {"name": "get_weather", "input_schema": WEATHER["parameters"]}
    said = {"model": "oai/tool-call", "max_tokens": 50, "messages": ask, "tools": [tool]}
    inputs = [(i, "get_weather", json.loads(a)) for i, a in PARALLEL_CALLS]
    answer = await messages.create(**said)  # type: ignore[arg-type]
    assert [(b.id, b.name, b.input) for b in answer.content if b.type == "tool_use"] == inputs
    async with messages.stream(**said) as flow:  # type: ignore[arg-type]
        final = await flow.get_final_message()
    assert [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"] == inputs

    function = {"type": "function", **WEATHER}
    deltas: dict[str, str] = {}
    done: list[tuple[str, str, str]] = []
    async with openai_client(stack).responses.stream(
        model="oai/tool-call",
        input=PARALLEL,
        tools=[function],  # type: ignore[list-item]
    ) as events:
        async for event in events:
            if event.type == "response.function_call_arguments.delta":
                deltas[event.item_id] = deltas.get(event.item_id, "") + event.delta
            elif event.type == "response.output_item.done" and event.item.type == "function_call":
                item = event.item
                assert deltas.get(item.id or "", "") == item.arguments  # the deltas add up to it
                done.append((item.call_id, item.name, item.arguments))
    assert done == [(i, "get_weather", a) for i, a in PARALLEL_CALLS]
