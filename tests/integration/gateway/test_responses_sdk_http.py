"""`/v1/responses` driven by OpenAI's SDK as client code drives it, over HTTP on a gateway process, a real
nats-server and SQLite; a scripted pipeline answers on the bus: structured output through
`responses.parse`, a function call streamed in pieces, a stream that breaks, and what the stored-response
endpoints say of a response (or conversation) that is not there or an operation that is not served
(stored responses themselves: test_stored_responses_http; conversations: test_conversations_http)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime

import openai
import pydantic
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import FunctionCall, TaskCompleted, TaskFailed, TaskSubmitted, ToolCall
from switchyard.common.streaming import Chunk, ToolCallPiece, encode_chunk
from tests.integration.gateway.responses_world import MODEL, World, answering, completed, publish, sdk, world

pytestmark = pytest.mark.integration
__all__ = ["sdk", "world"]  # fixtures


class City(pydantic.BaseModel):
    city: str
    population_millions: float


class Pipeline:
    """Plays classifier, router and executor: answers each task with `answer` (streamed word by word when
    the task streams), or with `breaks` streams the first word and then fails the task; with `call` it
    calls that tool after the text, its arguments streamed in 4-character pieces."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.seen: list[TaskSubmitted] = []
        self.answer = "Paris."
        self.breaks = False
        self.call: ToolCall | None = None

    async def on_task(self, msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        words = self.answer.split(" ")
        pieces = [w + " " for w in words[:-1]] + [words[-1]]
        if task.chat().stream:
            for seq, piece in enumerate(pieces[:1] if self.breaks else pieces):
                chunk = Chunk(seq=seq, delta=piece, model=MODEL if seq == 0 else None)
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk)
                )
            arguments = self.call.function.arguments if self.call is not None else ""
            calls = [
                ToolCallPiece(index=0, arguments=arguments[at : at + 4]) for at in range(0, len(arguments), 4)
            ]
            if self.call is not None:
                calls.insert(0, ToolCallPiece(index=0, id=self.call.id, name=self.call.function.name))
            for seq, piece in enumerate(calls, len(pieces)):
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id),
                    encode_chunk(Chunk(seq=seq, tool_call=piece)),
                )
            if not self.breaks:
                done = Chunk(seq=len(pieces) + len(calls), done=True, finish_reason="stop")
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(done)
                )
        outcome: TaskCompleted | TaskFailed = (
            TaskFailed(
                task_id=task.task_id,
                tenant_id=task.tenant_id,
                error_code="provider_network",
                error_message="the provider went away mid-answer",
                failed_at=datetime.now(UTC),
            )
            if self.breaks
            else completed(
                task, self.answer, completion_tokens=len(pieces), tool_calls=self.call and [self.call]
            )
        )
        await publish(self.nc, outcome)


@pytest.fixture
async def pipeline(world: World) -> AsyncIterator[Pipeline]:
    async with answering(world, Pipeline) as me:
        yield me


async def test_structured_output_through_responses_parse_whole_and_streamed(
    pipeline: Pipeline, sdk: openai.AsyncOpenAI
) -> None:
    pipeline.answer = '{"city": "Paris", "population_millions": 2.1}'
    parsed = await sdk.responses.parse(model="auto", input="The capital of France?", text_format=City)
    assert parsed.output_parsed == City(city="Paris", population_millions=2.1)
    asked = pipeline.seen[-1].chat()
    assert asked.response_format is not None and asked.response_format["json_schema"]["name"] == "City"
    assert asked.json_schema() == City.model_json_schema() | {"additionalProperties": False}
    async with sdk.responses.stream(model="auto", input="The capital?", text_format=City) as stream:
        final = await stream.get_final_response()
    assert final.output_parsed == City(city="Paris", population_millions=2.1)


async def test_a_function_call_streams_in_pieces_the_sdk_accumulates_whole(
    pipeline: Pipeline, sdk: openai.AsyncOpenAI
) -> None:
    arguments = '{"city": "Paris", "units": "celsius"}'
    pipeline.answer = "Let me look."
    pipeline.call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments=arguments))
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}
    async with sdk.responses.stream(model="auto", input="Weather in Paris?", tools=[tool]) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) == 10 and "".join(d.delta for d in deltas) == arguments
    assert deltas[-1].snapshot == arguments  # the SDK's own accumulation of the pieces
    assert [e.output_index for e in events if e.type == "response.output_item.added"] == [0, 1]
    call = final.output[1]
    assert call.type == "function_call" and (call.call_id, call.name, call.arguments) == (
        "call_1",
        "get_weather",
        arguments,
    )


async def test_a_stream_that_breaks_ends_with_response_failed(
    pipeline: Pipeline, sdk: openai.AsyncOpenAI
) -> None:
    pipeline.answer, pipeline.breaks = "Paris is the capital.", True
    async with sdk.responses.stream(model="auto", input="The capital of France?") as stream:
        events = [event async for event in stream]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.message == "the provider went away mid-answer"
    # the nearest code ResponseError allows, the failure's own type beside it (as its 502 answer says it)
    assert (failed.response.error.code, failed.response.error.type) == ("server_error", "api_error")


async def test_a_response_not_stored_is_a_404_and_what_is_not_served_says_so(
    world: World, sdk: openai.AsyncOpenAI
) -> None:
    calls: list[Awaitable[object]] = [
        sdk.responses.retrieve("resp_1"),
        sdk.responses.delete("resp_1"),
        sdk.responses.input_items.list("resp_1"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as err:
            await call
        assert err.value.code == "response_not_found" and "No response found" in err.value.message
    with pytest.raises(openai.NotFoundError) as background:
        await sdk.responses.cancel("resp_1")
    assert background.value.code == "not_found" and "only background responses" in background.value.message
    with pytest.raises(openai.NotFoundError) as unserved:
        await sdk.responses.compact(model="auto", input="Hello")
    assert "serves POST /v1/responses" in unserved.value.message
    conversations: list[Awaitable[object]] = [  # one never created, or another organisation's
        sdk.conversations.retrieve("conv_1"),
        sdk.conversations.delete("conv_1"),
        sdk.conversations.items.list("conv_1"),
        sdk.conversations.items.create("conv_1", items=[{"role": "user", "content": "hi"}]),
    ]
    for call in conversations:
        with pytest.raises(openai.NotFoundError) as unknown:
            await call
        assert unknown.value.code == "conversation_not_found", unknown.value.message
        assert unknown.value.message.endswith("Conversation with id 'conv_1' not found.")
    _, base, _ = world
    anonymous = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-nobody", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await anonymous.responses.retrieve("resp_1")
    await anonymous.close()
