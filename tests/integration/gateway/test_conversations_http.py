"""OpenAI's Conversations API driven by OpenAI's SDK over HTTP on a gateway process, a real nats-server and
SQLite, a scripted pipeline answering on the bus: a conversation created with items and metadata, listed
page by page both ways, items added, read and deleted, the conversation updated and deleted; and
`responses.create(conversation=...)`, whole and streamed, answering from the conversation's items and
adding its turn to them. What the SDK sends and reads is what OpenAI's API reference documents."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskSubmitted
from switchyard.common.streaming import Chunk, encode_chunk
from tests.integration.gateway.responses_world import MODEL, World, answering, completed, publish, sdk, world

pytestmark = pytest.mark.integration
__all__ = ["sdk", "world"]  # fixtures


class Pipeline:
    """Answers every task "Paris." (streamed when the task streams) and keeps what it was asked."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.seen: list[TaskSubmitted] = []

    async def on_task(self, msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        if task.chat().stream:
            chunks = (
                Chunk(seq=0, delta="Paris.", model=MODEL),
                Chunk(seq=1, done=True, finish_reason="stop"),
            )
            for chunk in chunks:
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk)
                )
        await publish(self.nc, completed(task, "Paris.", completion_tokens=2))


@pytest.fixture
async def pipeline(world: World) -> AsyncIterator[Pipeline]:
    async with answering(world, Pipeline) as me:
        yield me


async def test_a_conversation_and_its_items_through_the_sdk(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.conversations.create(
        items=[{"role": "user", "content": f"question {n}"} for n in range(5)],
        metadata={"topic": "demo"},
    )
    assert created.id.startswith("conv_") and created.object == "conversation"
    assert created.metadata == {"topic": "demo"}
    newest_first = [item async for item in sdk.conversations.items.list(created.id, limit=2)]
    assert [i.content[0].text for i in newest_first] == [f"question {n}" for n in range(4, -1, -1)]  # type: ignore[union-attr]
    first = newest_first[-1]
    assert first.type == "message" and first.id.startswith("msg_") and first.status == "completed"
    assert first.content[0].type == "input_text"  # type: ignore[union-attr]
    page = await sdk.conversations.items.list(created.id, order="asc", limit=3, after=first.id)
    assert [i.id for i in page.data] == [i.id for i in newest_first[3::-1][:3]] and page.has_more
    added = await sdk.conversations.items.create(
        created.id,
        items=[
            {"type": "message", "role": "assistant", "content": "an answer"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ],
    )
    assert [i.type for i in added.data] == ["message", "function_call", "function_call_output"]
    assert added.data[1].id.startswith("fc_") and added.first_id == added.data[0].id
    assert (
        await sdk.conversations.items.retrieve(added.data[2].id, conversation_id=created.id)
    ).output == "42"  # type: ignore[union-attr]
    after = await sdk.conversations.items.delete(first.id, conversation_id=created.id)
    assert after.id == created.id and after.object == "conversation"
    with pytest.raises(openai.NotFoundError) as gone:
        await sdk.conversations.items.retrieve(first.id, conversation_id=created.id)
    assert gone.value.code == "item_not_found"
    updated = await sdk.conversations.update(created.id, metadata={"topic": "other", "user": "ada"})
    assert (
        (await sdk.conversations.retrieve(created.id)).metadata
        == updated.metadata
        == {"topic": "other", "user": "ada"}
    )
    deleted = await sdk.conversations.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.retrieve(created.id)


async def test_documented_limits_are_specific_400s(sdk: openai.AsyncOpenAI) -> None:
    too_many = [{"role": "user", "content": "hi"}] * 21
    with pytest.raises(openai.BadRequestError) as items:
        await sdk.conversations.create(items=too_many)  # type: ignore[arg-type]
    assert (items.value.code, items.value.param) == ("array_above_max_length", "items")
    with pytest.raises(openai.BadRequestError) as metadata:
        await sdk.conversations.create(metadata={f"k{n}": "v" for n in range(17)})
    assert metadata.value.param == "metadata"
    conversation = await sdk.conversations.create(items=[])  # as OpenAIConversationsSession starts one
    with pytest.raises(openai.BadRequestError) as added:
        await sdk.conversations.items.create(conversation.id, items=too_many)  # type: ignore[arg-type]
    assert added.value.code == "array_above_max_length"
    with pytest.raises(openai.BadRequestError) as role:
        await sdk.conversations.items.create(conversation.id, items=[{"role": "robot", "content": "x"}])  # type: ignore[list-item]
    assert role.value.param == "items.0.role"
    with pytest.raises(openai.BadRequestError) as limit:
        await sdk.conversations.items.list(conversation.id, limit=101)
    assert limit.value.param == "limit"  # OpenAI names a query parameter alone (was "query.limit")
    with pytest.raises(openai.BadRequestError) as include:
        await sdk.conversations.items.list(conversation.id, include=["everything"])  # type: ignore[list-item]
    assert include.value.param == "include"


async def test_responses_in_a_conversation_whole_and_streamed(
    pipeline: Pipeline, sdk: openai.AsyncOpenAI
) -> None:
    conversation = await sdk.conversations.create(items=[{"role": "user", "content": "I live in France."}])
    first = await sdk.responses.create(model="auto", input="My capital?", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert [m.content for m in pipeline.seen[-1].chat().messages] == ["I live in France.", "My capital?"]
    async with sdk.responses.stream(
        model="auto", input="Again?", conversation={"id": conversation.id}, store=False
    ) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Paris." and final.conversation is not None
    assert [m.content for m in pipeline.seen[-1].chat().messages] == [
        "I live in France.",
        "My capital?",
        "Paris.",
        "Again?",
    ]
    items = [item async for item in sdk.conversations.items.list(conversation.id, order="asc")]
    assert [(i.role, i.content[0].text) for i in items] == [  # type: ignore[union-attr]
        ("user", "I live in France."),
        ("user", "My capital?"),
        ("assistant", "Paris."),
        ("user", "Again?"),
        ("assistant", "Paris."),
    ]
    assert items[2].id == first.output[0].id  # the response's output item, as it was answered
    alone = await sdk.responses.input_tokens.count(model="auto", input="Again?")
    counted = await sdk.responses.input_tokens.count(
        model="auto", input="Again?", conversation=conversation.id
    )
    assert counted.input_tokens > alone.input_tokens + 10  # the conversation's five items counted too
    with pytest.raises(openai.BadRequestError) as both:
        await sdk.responses.create(
            model="auto", input="hi", conversation=conversation.id, previous_response_id=first.id
        )
    assert both.value.code == "mutually_exclusive_parameters"
    with pytest.raises(openai.NotFoundError) as unknown:
        await sdk.responses.create(model="auto", input="hi", conversation="conv_" + "0" * 32)
    assert unknown.value.code == "conversation_not_found" and unknown.value.param == "conversation"


async def test_a_conversation_past_the_prompt_limit_is_answered_truncated_or_refused_saying_how(
    pipeline: Pipeline, sdk: openai.AsyncOpenAI
) -> None:
    long = "word " * 11_000  # 55,000 characters: twenty of them are past SWITCHYARD_MAX_PROMPT_CHARS (1 M)
    conversation = await sdk.conversations.create(items=[])
    for n in range(20):  # one a call: this gateway takes bodies of 64 KiB
        await sdk.conversations.items.create(
            conversation.id, items=[{"role": "user", "content": f"{n} {long}"}]
        )
    with pytest.raises(openai.APIStatusError) as refused:
        await sdk.responses.create(
            model="auto", input="Sum up.", conversation=conversation.id, truncation="disabled"
        )
    assert (refused.value.status_code, refused.value.code) == (413, "prompt_too_large")
    assert 'truncation: "auto"' in refused.value.message and "/items/" in refused.value.message
    answered = await sdk.responses.create(
        model="auto", input="Sum up.", conversation=conversation.id, truncation="auto"
    )
    assert answered.output_text == "Paris."
    assert pipeline.seen[-1].chat().truncation == "auto"  # the router cuts it to a model's window too
    sent = [m.content for m in pipeline.seen[-1].chat().messages]
    assert len(sent) == 19 and sent[0].startswith("2 word") and sent[-1] == "Sum up."  # type: ignore[union-attr]
    items = [item async for item in sdk.conversations.items.list(conversation.id, limit=100)]
    assert len(items) == 22  # the conversation keeps every item; only the answer's input was cut
