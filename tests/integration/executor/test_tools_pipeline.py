"""Tools and JSON mode through the real pipeline (`tools_stack`): the gateway, router and executor as
processes on a real nats-server, each provider a local server speaking its protocol (OpenAI, Anthropic,
Gemini). The test plays the classifier. A task that needs tools or JSON mode is routed only to models that
have them, the request reaches the provider in its own terms, and the tool calls come back through both
faces (OpenAI's and Anthropic's), whole and streamed."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from switchyard.common.events import TaskSubmitted
from tests.integration.executor.tools_stack import (
    ASK,
    WEATHER,
    Stack,
    anthropic_client,
    classifier,
    openai_client,
    stack,
)

pytestmark = pytest.mark.integration
__all__ = ["classifier", "stack"]  # fixtures


async def test_a_tool_task_skips_the_model_without_tools_and_the_call_comes_back(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    client = openai_client(stack)
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
    stream = await openai_client(stack).chat.completions.create(
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
    reply = await openai_client(stack).chat.completions.create(
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
    client = anthropic_client(stack)
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
    signature = list(stack.gemini.issued)[-1]  # what Gemini 3 signed this call with

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

    # The result goes back as a tool_result block; Gemini gets it as a functionResponse of that function,
    # and its call with the thought signature Gemini gave it, which the executor kept by the call's id
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
                "thoughtSignature": signature,
            }
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}}],
    }
    assert stack.gemini.signatures[-1] == "issued"  # not the sentinel: its reasoning is restored


async def test_pinning_a_model_without_tools_is_a_400_that_says_why(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(stack).chat.completions.create(
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
        await openai_client(stack).chat.completions.create(model="auto", messages=long)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert error["param"] == "messages" and "8000 tokens" in error["message"]
    # The Anthropic face says it in Anthropic's words, which clients act on: Claude Code compacts its
    # conversation on "prompt is too long", and retries with a smaller max_tokens on the other
    client = anthropic_client(stack)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="auto", max_tokens=100, messages=long)  # type: ignore[arg-type]
    assert _said(refused.value).startswith("prompt is too long: 9007 tokens > 8000 maximum (the prompt")
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="auto", max_tokens=9_000, messages=ASK)  # type: ignore[arg-type]
    assert _said(refused.value).startswith(
        "input length and `max_tokens` exceed context limit: 13 + 9000 > 8000, decrease input length or "
        "`max_tokens` and try again (the prompt (about 13 tokens) and max_tokens (9000) exceed"
    )
    assert len(stack.openai.requests) + len(stack.anthropic.requests) + len(stack.gemini.requests) == calls


def _said(error: anthropic.APIStatusError) -> str:
    """The message of an error in Anthropic's shape."""
    return error.body["error"]["message"]  # type: ignore[index,no-any-return]


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
EPHEMERAL = {"type": "ephemeral"}


async def test_prompt_cache_marks_reach_anthropic_and_nobody_else(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """A Claude Code-like turn: a system prompt in blocks, the tools, an image and the last tool result
    marked as Anthropic prompt-cache breakpoints. An Anthropic model gets the marks where they were; an
    OpenAI-compatible one the same request without them (it caches by itself)."""
    client = anthropic_client(stack)
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
    client = anthropic_client(stack)
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


@pytest.mark.parametrize("streamed", [False, True])
async def test_gemini_gets_its_answers_signature_back_with_the_next_turn(
    stack: Stack, classifier: list[TaskSubmitted], streamed: bool
) -> None:
    """Gemini 3 signs an answer's text (its reasoning, encrypted); the client sends the answer back as
    plain text in the next turn's history, and the executor puts the signature back on it (kept by a
    hash of the text, per tenant). An answer the client edited goes back unsigned."""
    client = openai_client(stack)
    question = {"role": "user", "content": "What is the capital of France?"}
    if streamed:
        stream = await client.chat.completions.create(
            model="gem/tool-call", messages=[question], max_tokens=32, stream=True
        )
        answer = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    else:
        first = await client.chat.completions.create(
            model="gem/tool-call", messages=[question], max_tokens=32
        )
        answer = first.choices[0].message.content or ""
    assert answer.startswith("Hello! You said:")
    issued = list(stack.gemini.text_issued)[-1]
    follow_up = {"role": "user", "content": "And of Spain?"}

    await client.chat.completions.create(
        model="gem/tool-call", messages=[question, {"role": "assistant", "content": answer}, follow_up]
    )
    contents = stack.gemini.requests[-1].body["contents"]
    assert contents[1] == {"role": "model", "parts": [{"text": answer, "thoughtSignature": issued}]}
    assert stack.gemini.text_signatures[-1] == "issued"

    edited = {"role": "assistant", "content": answer + " (edited)"}
    await client.chat.completions.create(model="gem/tool-call", messages=[question, edited, follow_up])
    assert stack.gemini.text_signatures[-1] == "none"


async def test_a_failed_tool_call_reaches_each_provider_as_one_and_built_in_tools_are_refused(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """A tool_result with `is_error` (Claude Code's for a command that failed) tells the model the call
    failed: Anthropic gets `is_error`, Gemini the result under `error`, chat completions (no such field)
    the text alone. Anthropic's built-in tools (web search, bash) are a 400 naming the tool's type."""
    client = anthropic_client(stack)
    turns = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "service down", "is_error": True}
            ],
        },
    ]
    for model in ("ant/tool-call", "oai/tool-call", "gem/tool-call"):
        await client.messages.create(model=model, max_tokens=64, messages=turns)  # type: ignore[arg-type]
    assert stack.anthropic.requests[-1].body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "service down", "is_error": True}
    ]
    assert stack.openai.requests[-1].body["messages"][2] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "service down",
    }
    assert stack.gemini.requests[-1].body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"error": "service down"}}}
    ]

    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="auto", max_tokens=64, messages=ASK, tools=[search])  # type: ignore[arg-type,list-item]
    with pytest.raises(anthropic.BadRequestError) as uncounted:
        await client.messages.count_tokens(model="auto", messages=ASK, tools=[search])  # type: ignore[arg-type,list-item]
    for caught in (refused, uncounted):
        error = caught.value.body["error"]  # type: ignore[index]
        assert (error["code"], error["param"]) == ("unsupported_parameter", "tools.0.type")
        assert "built-in tools ('web_search_20250305') are not served" in error["message"]


async def test_the_sdks_tool_runner_goes_round_a_tool_loop(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """The SDK's tool runner asks for a message thread (the API keeps the conversation, and a turn that
    continues it sends only its new messages). Switchyard keeps none: `thread` is refused as Anthropic
    refuses a request it cannot thread, and the runner sends whole conversations from then on (it sent
    its second turn with only the tool result, which was then refused as answering no tool_use)."""

    @anthropic.beta_async_tool
    async def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"21C in {city}"

    client = anthropic_client(stack)
    runner = client.beta.messages.tool_runner(
        model="ant/tool-call",
        max_tokens=64,
        messages=ASK,
        tools=[get_weather],
        max_iterations=2,  # type: ignore[arg-type]
    )
    replies = [reply async for reply in runner]
    assert [reply.stop_reason for reply in replies] == ["tool_use", "tool_use"]
    call = replies[0].content[0]
    assert stack.anthropic.requests[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },  # type: ignore[union-attr]
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21C in Paris"}],
        },  # type: ignore[union-attr]
    ]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(
            model="auto",
            max_tokens=8,
            messages=ASK,
            extra_body={"thread": {"type": "create"}},  # type: ignore[arg-type]
        )
    assert refused.value.error_code == "thread_unsupported_request" and refused.value.status_code == 400
    assert "message threads are not served" in _said(refused.value)
