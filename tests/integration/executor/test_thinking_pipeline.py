"""Reasoning through the real pipeline (`tools_stack`): extended and adaptive thinking through a Claude
Code-like tool loop, reasoning efforts in each provider's terms, the Responses API's tool loop, and
Claude's signed thinking going round the other faces' tool loops."""

from __future__ import annotations

import json

import anthropic
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
from tests.support.fake_anthropic import sign
from tests.support.fake_openai import REASONED

pytestmark = pytest.mark.integration
__all__ = ["classifier", "stack"]  # fixtures

THINKING = {"type": "enabled", "budget_tokens": 2048}


async def test_extended_thinking_through_a_claude_code_like_tool_loop(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """With thinking enabled, an Anthropic model gets the budget, the answer brings its signed thinking
    block (whole and streamed), and the next turn of the tool loop sends it back untouched: the fake, as
    Anthropic, refuses a thinking block whose signature does not match, and a continued tool loop whose
    assistant turn lacks one."""
    client = anthropic_client(stack)
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
    client = openai_client(stack)
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
    ant = anthropic_client(stack)
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
    client = openai_client(stack)
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

    # the first response was stored: a follow-up names it and sends only the call's output; the provider
    # gets the first turn, the call and its output (not the first's instructions: OpenAI drops them too)
    follow = await client.responses.create(
        model="oai/tool-call",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21C and sunny"}],
        previous_response_id=first.id,
    )
    assert follow.previous_response_id == first.id and follow.store and follow.output_text
    sent = stack.openai.requests[-1].body["messages"]
    assert sent[0] == {"role": "user", "content": "What is the weather in Paris?"}
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "21C and sunny"}
    assert (await client.responses.retrieve(follow.id)).output_text == follow.output_text


async def test_claudes_thinking_goes_round_a_responses_tool_loop(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Through the Responses face a Claude model's thinking is a reasoning item (summary text, the signed
    block in encrypted_content); sent back with the function call's output, as the Responses API asks,
    it reaches Anthropic intact: the fake refuses a tool loop with thinking whose turn lacks its block."""
    client = openai_client(stack)
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
    client = openai_client(stack)
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


async def test_adaptive_thinking_as_claude_code_sends_it_to_claude_opus_4_7(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Claude Code on Opus 4.7 sends `thinking: adaptive` and an effort (it was a 400 here); Opus 4.7
    refuses a budget, so the model gets adaptive thinking at that effort, its signed thinking streams back
    first, and the next turn of the tool loop sends it back."""
    client = anthropic_client(stack)
    tool = {
        "name": "get_weather",
        "description": "The weather",
        "input_schema": WEATHER["function"]["parameters"],
    }  # type: ignore[index]
    model = "ant/claude-opus-4-7:tool-call"
    adaptive = {"type": "adaptive"}
    async with client.messages.stream(
        model=model,
        max_tokens=16000,
        thinking=adaptive,  # type: ignore[arg-type]
        output_config={"effort": "xhigh"},
        messages=ASK,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        kinds = [event.type async for event in stream]
        first = await stream.get_final_message()
    sent = stack.anthropic.requests[-1].body
    assert sent["thinking"] == adaptive and sent["output_config"] == {"effort": "xhigh"}
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert kinds.index("thinking") < kinds.index("input_json")
    thought = first.content[0]
    assert thought.type == "thinking" and thought.signature == sign(thought.thinking)

    turns = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "21C"}],  # type: ignore[union-attr]
        },
    ]
    after = await client.messages.create(
        model=model,
        max_tokens=16000,
        thinking=adaptive,  # type: ignore[arg-type]
        messages=turns,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    )
    assert after.content[0].type == "thinking"
    sent = stack.anthropic.requests[-1].body
    assert sent["messages"][1]["content"][0] == thought.model_dump(exclude_none=True)
    assert "output_config" not in sent  # no effort asked: the model's own default

    # the same request through the OpenAI face: an effort, and Opus 4.7 still gets adaptive thinking
    reply = await openai_client(stack).chat.completions.create(
        model=model,
        messages=ASK,  # type: ignore[arg-type]
        reasoning_effort="low",
    )
    assert reply.choices[0].message.content
    sent = stack.anthropic.requests[-1].body
    assert sent["thinking"] == adaptive and sent["output_config"] == {"effort": "low"}


async def test_a_tool_loop_to_a_model_that_takes_tools_only_through_openais_responses_api(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """GPT-6.1 Sol takes function tools only through OpenAI's Responses API: a chat-completions tool loop
    pinned to it reaches the upstream as input items, with the effort asked, its function call comes
    back as the SDK's tool call, and the reasoning before the call goes back with it (encrypted, kept by
    the executor: the client's messages have no place for it), whole and streamed."""
    client = openai_client(stack)
    forced = {"type": "function", "function": {"name": "get_weather"}}
    first = await client.chat.completions.create(
        model="openai/gpt-6.1-sol",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=forced,  # type: ignore[arg-type]
        reasoning_effort="high",
    )
    [call] = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})  # type: ignore[union-attr]
    sent = stack.openai.requests[-1]
    assert sent.path == "/v1/responses"
    assert (sent.body["reasoning"], sent.body["tool_choice"]) == (
        {"effort": "high"},
        {"type": "function", "name": "get_weather"},
    )
    # the upstream's `output_tokens_details.reasoning_tokens`, in the chat face's terms
    assert first.usage is not None and first.usage.completion_tokens_details is not None
    assert first.usage.completion_tokens_details.reasoning_tokens == REASONED == first.usage.completion_tokens

    turns = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    stream = await client.chat.completions.create(
        model="openai/gpt-6.1-sol",
        messages=turns,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        stream=True,
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == "Hello! You said: And tomorrow?"
    sent = stack.openai.requests[-1]
    assert sent.path == "/v1/responses" and sent.body["stream"] is True
    # the model's encrypted reasoning before its call, kept by the executor, goes back before the call
    assert [i.get("type", i.get("role")) for i in sent.body["input"]] == [
        "user",
        "reasoning",
        "function_call",
        "function_call_output",
        "user",
    ]
    assert stack.openai.reasoning.back[-1] == sent.body["input"][1]["id"]
    assert sent.body["input"][3] == {
        "type": "function_call_output",
        "call_id": call.id,
        "output": "21C and sunny",
    }


async def test_a_reasoning_models_reasoning_tokens_reach_the_client_on_each_face(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """OpenAI counts a reasoning model's hidden reasoning among its completion tokens and apart; the
    count goes through the executor to the chat face (whole, and in the streamed usage chunk) and the
    Responses face, where the SDKs read it. A model whose provider does not count it apart (Anthropic's)
    has no details in chat completions, and 0 where the Responses API requires the field."""
    client = openai_client(stack)
    whole = await client.chat.completions.create(model="openai/gpt-6.1-sol", messages=ASK)  # type: ignore[arg-type]
    assert whole.usage is not None and whole.usage.completion_tokens_details is not None
    assert whole.usage.completion_tokens_details.reasoning_tokens == REASONED < whole.usage.completion_tokens
    stream = await client.chat.completions.create(
        model="openai/gpt-6.1-sol",
        messages=ASK,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    [usage] = [c.usage async for c in stream if c.usage is not None]
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONED
    response = await client.responses.create(model="openai/gpt-6.1-sol", input="Say hello.")
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == REASONED
    claude = await client.chat.completions.create(model="ant/tool-call", messages=ASK)  # type: ignore[arg-type]
    assert claude.usage is not None and claude.usage.completion_tokens_details is None
    counted = await client.responses.create(model="ant/tool-call", input="Say hello.")
    assert counted.usage is not None and counted.usage.output_tokens_details.reasoning_tokens == 0
