"""Tools and JSON mode through the real pipeline: the gateway, router and executor as processes on a real
nats-server, each provider a local server speaking its protocol (OpenAI, Anthropic, Gemini). The test
plays the classifier. A task that needs tools or JSON mode is routed only to models that have them, the
request reaches the provider in its own terms, and the tool calls come back through both faces (OpenAI's
and Anthropic's), whole and streamed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import nats
import openai
import pytest
import yaml

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import Classification, TaskClassified, TaskSubmitted
from tests.integration.gateway.harness import Org, gateways, make_org
from tests.integration.pipeline.services import Fleet
from tests.support.fake_anthropic import FakeAnthropic, sign
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import BackgroundServer, FakeOpenAI

pytestmark = pytest.mark.integration


def _model(provider: str, upstream: str, capabilities: list[str]) -> dict[str, Any]:
    return {
        "id": f"{provider}/{upstream}",
        "provider": provider,
        "upstream": upstream,
        "tier": "fast",
        "input_per_1k": 0.0001,
        "output_per_1k": 0.0002,
        "context_window": 8000,
        "capabilities": capabilities,
    }


# In preference order: a model with no capabilities, one with tools only, then tools and JSON mode.
POLICY = {
    "version": "tools",
    "models": [
        _model("plain", "model-a", []),
        _model("ant", "tool-call", ["tools", "vision", "reasoning"]),
        _model("oai", "tool-call", ["tools", "json_mode", "vision", "reasoning"]),
        _model("gem", "tool-call", ["tools", "json_mode", "vision"]),
    ],
    "strategies": {"cascade": {"enabled": False}, "parallel": {"enabled": False}},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@dataclass
class Stack:
    base: str
    org: Org
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    nats_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tools")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    fakes = FakeOpenAI(), FakeAnthropic(), FakeGemini()
    base_env = {
        "SWITCHYARD_NATS_URL": server.url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_POLICY_PATH": str(policy),
        **{f"{p}_API_KEY": "" for p in ("OPENAI", "ANTHROPIC", "GEMINI", "GOOGLE")},
    }
    fleet = Fleet(tmp, base_env)
    try:
        with (
            BackgroundServer(fakes[0].app) as o,
            BackgroundServer(fakes[1].app) as a,
            BackgroundServer(fakes[2].app) as g,
        ):
            extra = {
                "plain": {"kind": "openai", "base_url": f"{o.url}/v1", "api_key": fakes[0].api_key},
                "oai": {"kind": "openai", "base_url": f"{o.url}/v1", "api_key": fakes[0].api_key},
                "ant": {"kind": "anthropic", "base_url": a.url, "api_key": fakes[1].api_key},
                "gem": {"kind": "gemini", "base_url": g.url, "api_key": fakes[2].api_key},
            }
            env = {"SWITCHYARD_LOCAL_ENABLED": "false", "SWITCHYARD_EXTRA_PROVIDERS": json.dumps(extra)}
            fleet.start("switchyard.router", name="router")  # they start while the gateway does
            fleet.start("switchyard.executor", name="executor", env=env)
            with gateways(server, db_url, tmp, env={**base_env, "SWITCHYARD_TASK_TIMEOUT_S": "20"}) as (
                base,
            ):
                fleet.wait_ready()
                org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
                yield Stack(base, org, *fakes, server.url)
    finally:
        fleet.stop_all()
        server.stop()


@pytest.fixture
async def classifier(stack: Stack) -> AsyncIterator[list[TaskSubmitted]]:
    """Plays the classifier: every submitted task is classified as an easy question."""
    nc = await nats.connect(stack.nats_url)
    seen: list[TaskSubmitted] = []
    publisher = bus.EventPublisher(nc.jetstream(), source="test/classifier")

    async def on_task(msg: Any) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        seen.append(task)
        classification = Classification(
            type="qa", confidence=0.9, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        )
        await publisher.publish(
            TaskClassified(task=task, classification=classification),
            event_id=ids.derived_id(task.task_id, "classified"),
            tenant_id=task.tenant_id,
            event_subject=task.task_id,
        )

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=on_task)
    await nc.flush()
    yield seen
    await nc.close()


def _openai(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{stack.base}/v1", api_key=stack.org.keys["member"], max_retries=0, timeout=30
    )


async def test_a_tool_task_skips_the_model_without_tools_and_the_call_comes_back(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    client = _openai(stack)
    plain = await client.chat.completions.create(model="auto", messages=ASK)  # type: ignore[arg-type]
    assert plain.model == "plain/model-a" and plain.choices[0].message.tool_calls is None

    reply = await client.chat.completions.create(
        model="auto",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="auto",
        seed=11,
    )
    assert reply.model == "ant/tool-call"  # the first model with tools, in the policy's order
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    submitted = classifier[-1].request
    assert submitted.tools and submitted.tools[0].function.name == "get_weather" and submitted.seed == 11
    sent = stack.anthropic.requests[-1].body
    assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]  # type: ignore[index]

    # The client runs the tool and sends the result back: the tool turns travel to the provider too.
    followup = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
    ]
    await client.chat.completions.create(model="auto", messages=followup)  # type: ignore[arg-type]
    messages = stack.anthropic.requests[-1].body["messages"]
    assert messages[1]["content"][0]["type"] == "tool_use" and messages[1]["content"][0]["id"] == call.id
    assert messages[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": '{"celsius": 21}',
    }


async def test_streamed_tool_calls_through_the_openai_face(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    stream = await _openai(stack).chat.completions.create(
        model="gem/tool-call",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = delta.id or entry["id"]
                if delta.function is not None:
                    entry["name"] += delta.function.name or ""
                    entry["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"} and calls[0]["id"]
    sent = stack.gemini.requests[-1]
    assert sent.path.endswith(":streamGenerateContent")
    assert sent.body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


async def test_a_json_task_goes_to_a_model_with_json_mode(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    before = len(stack.anthropic.requests)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    reply = await _openai(stack).chat.completions.create(
        model="auto",
        messages=ASK,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}},  # type: ignore[typeddict-item]
    )
    assert reply.model == "oai/tool-call"  # the tools-only model (and the plain one) lack json_mode
    assert len(stack.anthropic.requests) == before
    sent = stack.openai.requests[-1].body
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert classifier[-1].request.response_format == sent["response_format"]


async def test_tool_use_through_the_anthropic_face(stack: Stack, classifier: list[TaskSubmitted]) -> None:
    client = anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)
    tool = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
    }
    message = await client.messages.create(
        model="gem/tool-call",
        max_tokens=64,
        messages=ASK,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather" and block.input == {"city": "Paris"}
    sent = stack.gemini.requests[-1].body
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    async with client.messages.stream(
        model="gem/tool-call",
        max_tokens=64,
        messages=ASK,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        ("get_weather", {"city": "Paris"})
    ]

    # The result goes back as a tool_result block; Gemini gets it as a functionResponse of that function.
    await client.messages.create(
        model="gem/tool-call",
        max_tokens=64,
        messages=[
            *ASK,
            {"role": "assistant", "content": [block.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "21C"}]},
        ],  # type: ignore[list-item]
    )
    contents = stack.gemini.requests[-1].body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "skip_thought_signature_validator",  # Gemini 3's sentinel
            }
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}}],
    }


async def test_pinning_a_model_without_tools_is_a_400_that_says_why(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await _openai(stack).chat.completions.create(
            model="plain/model-a",
            messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_lacks_capability"
    assert "lacks tools" in error["message"] and error["param"] == "model"


async def test_a_prompt_no_model_can_hold_is_a_400_that_says_so(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Every model's context window is 8,000 tokens: a longer prompt is the client's to shorten (400,
    `context_length_exceeded`, like OpenAI's), not a 503 that an SDK would retry in vain."""
    calls = len(stack.openai.requests) + len(stack.anthropic.requests) + len(stack.gemini.requests)
    long = [{"role": "user", "content": "word " * 9_000}]
    with pytest.raises(openai.BadRequestError) as caught:
        await _openai(stack).chat.completions.create(model="auto", messages=long)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert error["param"] == "messages" and "8000 tokens" in error["message"]
    client = anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="auto", max_tokens=100, messages=long)  # type: ignore[arg-type]
    assert "context window" in str(refused.value) and "max_tokens (100)" in str(refused.value)
    assert len(stack.openai.requests) + len(stack.anthropic.requests) + len(stack.gemini.requests) == calls


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
EPHEMERAL = {"type": "ephemeral"}


async def test_prompt_cache_marks_reach_anthropic_and_nobody_else(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """A Claude Code-like turn: a system prompt in blocks, the tools, an image and the last tool result
    marked as Anthropic prompt-cache breakpoints. An Anthropic model gets the marks where they were; an
    OpenAI-compatible one the same request without them (it caches by itself)."""
    client = anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)
    tool = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
        "cache_control": EPHEMERAL,
    }
    system = [
        {"type": "text", "text": "You are a weather bot."},
        {
            "type": "text",
            "text": "Long, stable instructions.",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        },
    ]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    turns = [
        {"role": "user", "content": [image, {"type": "text", "text": "What is the weather where this is?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "21C",
                    "cache_control": EPHEMERAL,
                }
            ],
        },
    ]
    for model in ("ant/tool-call", "oai/tool-call"):
        await client.messages.create(
            model=model,
            max_tokens=64,
            system=system,
            messages=turns,
            tools=[tool],  # type: ignore[arg-type]
        )
    sent = stack.anthropic.requests[-1].body
    assert sent["system"] == [  # a one-hour ttl is sent as the default five minutes (README)
        {"type": "text", "text": "You are a weather bot."},
        {"type": "text", "text": "Long, stable instructions.", "cache_control": EPHEMERAL},
    ]
    assert sent["tools"][0]["cache_control"] == EPHEMERAL
    assert sent["messages"][0]["content"] == [
        {"type": "image", "source": image["source"]},
        {"type": "text", "text": "What is the weather where this is?"},
    ]
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C", "cache_control": EPHEMERAL}
    ]
    oai = stack.openai.requests[-1].body
    assert "cache_control" not in json.dumps(oai)
    assert oai["messages"][0]["content"] == [  # OpenAI takes a system prompt in text parts too
        {"type": "text", "text": "You are a weather bot."},
        {"type": "text", "text": "Long, stable instructions."},
    ]
    assert oai["messages"][1]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PIXEL}"},
    }
    assert oai["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"}


async def test_images_a_tool_returned_reach_each_provider_in_its_terms(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """A tool result holding a screenshot (as Claude Code's reads of image files come back): Anthropic
    gets it inside the tool_result, Gemini beside the functionResponse, an OpenAI-compatible model in a
    user message right after the tool message, which keeps the text."""
    client = anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": "screenshot.png"}, image],
    }
    turns = [
        {"role": "user", "content": "Take a screenshot and describe it."},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {"role": "user", "content": [result, {"type": "text", "text": "What do you see?"}]},
    ]
    for model in ("ant/tool-call", "oai/tool-call", "gem/tool-call"):
        await client.messages.create(model=model, max_tokens=64, messages=turns)  # type: ignore[arg-type]
    assert stack.anthropic.requests[-1].body["messages"][2:] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {"type": "text", "text": "screenshot.png"},
                        {"type": "image", "source": image["source"]},
                    ],
                }
            ],
        },
        {"role": "user", "content": "What do you see?"},
    ]
    picture = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    assert stack.openai.requests[-1].body["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "screenshot.png"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "The result of toolu_1 came with these images:"}, picture],
        },
        {"role": "user", "content": "What do you see?"},
    ]
    assert stack.gemini.requests[-1].body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "screenshot.png"}}},
            {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
            {"text": "What do you see?"},
        ],
    }


THINKING = {"type": "enabled", "budget_tokens": 2048}


async def test_extended_thinking_through_a_claude_code_like_tool_loop(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """With thinking enabled, an Anthropic model gets the budget, the answer brings its signed thinking
    block (whole and streamed), and the next turn of the tool loop sends it back untouched: the fake, as
    Anthropic, refuses a thinking block whose signature does not match, and a continued tool loop whose
    assistant turn lacks one."""
    client = anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)
    tool = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
    }
    first = await client.messages.create(
        model="ant/tool-call",
        max_tokens=4000,
        thinking=THINKING,  # type: ignore[arg-type]
        messages=ASK,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    thought = first.content[0]
    assert thought.type == "thinking" and thought.signature == sign(thought.thinking)
    assert stack.anthropic.requests[-1].body["thinking"] == THINKING
    assert first.usage.output_tokens > 7  # the thinking's tokens are output tokens

    turns = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "21C"}],
        },  # type: ignore[union-attr]
    ]
    async with client.messages.stream(
        model="ant/tool-call",
        max_tokens=4000,
        thinking=THINKING,  # type: ignore[arg-type]
        messages=turns,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    sent = stack.anthropic.requests[-1].body
    assert sent["messages"][1]["content"][0] == thought.model_dump(exclude_none=True)  # back, intact
    assert "thinking" in kinds and "signature" in kinds  # the SDK's events for thinking and signature deltas
    assert kinds.index("thinking") < kinds.index("input_json")  # reasoning streams first
    assert final.content[0].type == "thinking" and final.content[0].signature == sign(
        final.content[0].thinking
    )

    # a thinking block altered by the client: Anthropic's 400 reaches the client as a 400
    forged = [
        turns[0],
        {
            "role": "assistant",
            "content": [{**thought.model_dump(), "thinking": "Other."}, turns[1]["content"][1]],
        },
        turns[2],
    ]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model="ant/tool-call",
            max_tokens=4000,
            thinking=THINKING,
            messages=forged,  # type: ignore[arg-type]
        )

    # the same loop answered by a model without thinking: Anthropic would refuse thinking; it goes without
    unthinking = [turns[0], {"role": "assistant", "content": [turns[1]["content"][1]]}, turns[2]]  # type: ignore[index]
    plain = await client.messages.create(
        model="ant/tool-call",
        max_tokens=4000,
        thinking=THINKING,
        messages=unthinking,  # type: ignore[arg-type]
    )
    assert [b.type for b in plain.content] == ["text"] and "thinking" not in stack.anthropic.requests[-1].body


async def test_reasoning_reaches_only_models_that_take_it_in_their_terms(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """OpenAI's reasoning_effort to an OpenAI model with `reasoning`, as itself; a model without the
    capability gets the request without it (Gemini would otherwise be sent a thinking budget)."""
    client = _openai(stack)
    answer = await client.chat.completions.create(
        model="oai/tool-call",
        messages=ASK,
        reasoning_effort="high",  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content
    assert stack.openai.requests[-1].body["reasoning_effort"] == "high"
    await client.chat.completions.create(model="gem/tool-call", messages=ASK, reasoning_effort="high")  # type: ignore[arg-type]
    assert "thinkingConfig" not in stack.gemini.requests[-1].body.get("generationConfig", {})
    # the Anthropic face's budget, to an OpenAI model: the nearest effort
    ant = anthropic.AsyncAnthropic(base_url=stack.base, api_key=stack.org.keys["member"], max_retries=0)
    message = await ant.messages.create(
        model="oai/tool-call",
        max_tokens=21000,
        thinking={"type": "enabled", "budget_tokens": 17000},
        messages=ASK,  # type: ignore[arg-type]
    )
    assert message.content[0].type == "text"  # no thinking blocks from a provider that returns none
    assert stack.openai.requests[-1].body["reasoning_effort"] == "high"


FLAT_WEATHER = {"type": "function", **WEATHER["function"]}  # type: ignore[dict-item]


async def test_the_responses_api_through_a_tool_loop_whole_and_streamed(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """The OpenAI SDK's `responses` against the Responses face: a function call comes back as a
    function_call item, its output goes back as a function_call_output item and reaches the provider as its
    tool result, and the SDK's stream accumulator rebuilds the same response from the events."""
    client = _openai(stack)
    first = await client.responses.create(
        model="oai/tool-call",
        instructions="You are a weather bot.",
        input="What is the weather in Paris?",
        tools=[FLAT_WEATHER],  # type: ignore[list-item]
    )
    assert first.status == "completed" and first.id.startswith("resp_")
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    sent = stack.openai.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "You are a weather bot."}
    assert sent["tools"][0]["function"]["name"] == "get_weather"

    turns = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "21C and sunny"},
    ]
    after = await client.responses.create(model="oai/tool-call", input=turns)  # type: ignore[arg-type]
    assert after.output_text and after.usage is not None and after.usage.total_tokens > 0
    sent = stack.openai.requests[-1].body
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.call_id, "content": "21C and sunny"}

    # streamed, answered by an Anthropic model: the SDK's accumulator takes the events as OpenAI's
    async with client.responses.stream(model="ant/tool-call", input="Say hello in three words.") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 1  # streamed as it came
    assert final.output_text.startswith("Hello!") and final.model == "ant/tool-call"
    async with client.responses.stream(
        model="gem/tool-call",
        input="What is the weather in Paris?",
        tools=[FLAT_WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_response()
    assert [(i.type, getattr(i, "name", None)) for i in final.output] == [("function_call", "get_weather")]

    # what a stateless gateway cannot do is refused, not answered without the context it names
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(
            model="oai/tool-call", input="and tomorrow?", previous_response_id=first.id
        )
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_claudes_thinking_goes_round_a_responses_tool_loop(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Through the Responses face a Claude model's thinking is a reasoning item (summary text, the signed
    block in encrypted_content); sent back with the function call's output, as the Responses API asks,
    it reaches Anthropic intact: the fake refuses a tool loop with thinking whose turn lacks its block."""
    client = _openai(stack)
    async with client.responses.stream(
        model="ant/tool-call",
        input="What is the weather in Paris?",
        tools=[FLAT_WEATHER],  # type: ignore[list-item]
        reasoning={"effort": "low"},
        max_output_tokens=4000,
    ) as stream:
        kinds = [event.type async for event in stream]
        first = await stream.get_final_response()
    assert stack.anthropic.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "response.reasoning_summary_text.delta" in kinds
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text.startswith("The user asked")
    assert call.type == "function_call" and call.name == "get_weather"
    followup = [
        {"role": "user", "content": "What is the weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "21C"},
    ]
    after = await client.responses.create(
        model="ant/tool-call",
        input=followup,  # type: ignore[arg-type]
        tools=[FLAT_WEATHER],  # type: ignore[list-item]
        reasoning={"effort": "low"},
        max_output_tokens=4000,
    )
    sent = stack.anthropic.requests[-1].body
    assert sent["thinking"]["budget_tokens"] == 1024  # the loop goes on with thinking: its block came back
    assert sent["messages"][1]["content"][0]["type"] == "thinking"
    assert sent["messages"][1]["content"][0]["thinking"] == reasoning.summary[0].text
    assert [i.type for i in after.output] == ["reasoning", "function_call"]  # the fake calls its tool again


async def test_claudes_thinking_goes_round_a_chat_completions_tool_loop(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Through the OpenAI face a Claude model's thinking comes back as `reasoning_content` and
    `thinking_blocks` (LiteLLM's field); an assistant message sent back with its `thinking_blocks` gives
    Anthropic its signed block, so the tool loop goes on with thinking."""
    client = _openai(stack)
    first = await client.chat.completions.create(
        model="ant/tool-call",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        reasoning_effort="low",
        max_tokens=4000,
    )
    message = first.choices[0].message
    extra = message.model_extra or {}
    assert message.tool_calls and extra["reasoning_content"].startswith("The user asked")
    [block] = extra["thinking_blocks"]
    assert block["signature"] == sign(block["thinking"])
    call = message.tool_calls[0]
    turns = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()], "thinking_blocks": [block]},
        {"role": "tool", "tool_call_id": call.id, "content": "21C"},
    ]
    await client.chat.completions.create(
        model="ant/tool-call",
        messages=turns,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        reasoning_effort="low",
        max_tokens=4000,
    )
    sent = stack.anthropic.requests[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["messages"][1]["content"][0] == block  # first in its turn, intact
