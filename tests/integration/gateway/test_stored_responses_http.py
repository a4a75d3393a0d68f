"""Stored responses on the Responses face, over HTTP on gateway processes, a real nats-server and SQLite,
with OpenAI's SDK as the client: `previous_response_id` and `item_reference` continue a conversation from
what another replica stored, `GET`/`DELETE /v1/responses/{id}` and `input_items` read it, and nothing of
one organisation's is reachable from another's. A scripted responder plays the pipeline: it records each
task's messages and answers with a call of the first tool offered on a user turn, else with text. And a
conversation (`/v1/conversations`) answered on both replicas at once, hidden from another organisation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import openai
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.envelope import decode, encode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    FunctionCall,
    FunctionSpec,
    TaskSubmitted,
    ToolCall,
    ToolSpec,
    Usage,
)
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.common.tokens import count_prompt
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import Org, gateways, make_org
from tests.support.tasks import completed_of

pytestmark = pytest.mark.integration
MODEL = "openai/gpt-4o-mini"
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


@dataclass
class World:
    server: NatsServer
    bases: list[str]  # two replicas that store responses
    unstored: str  # a replica with SWITCHYARD_RESPONSES_STORE=false
    acme: Org
    other: Org

    def client(self, org: Org, replica: int = 0, *, base: str | None = None) -> openai.AsyncOpenAI:
        url = base or self.bases[replica]
        return openai.AsyncOpenAI(api_key=org.keys["member"], base_url=f"{url}/v1", max_retries=0)


class Responder:
    """Stands in for classifier+router+executor (see the module's docstring); answer n is `answer n`."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.seen: list[TaskSubmitted] = []

    def messages(self) -> list[tuple[str, Any]]:
        """The last task's conversation: (role, text or tool call id)."""
        return [_turn(m) for m in self.seen[-1].chat().messages]

    async def on_task(self, msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        request = task.chat()
        calls = None
        text = f"answer {len(self.seen)}"
        if request.tools and request.messages[-1].role == "user":
            name = request.tools[0].function.name  # the first tool offered
            calls = [ToolCall(id=f"call_{len(self.seen)}", function=FunctionCall(name=name, arguments="{}"))]
            text = ""
        if request.stream and text:
            chunk = Chunk(seq=0, delta=text, model=MODEL)
            await self.nc.publish(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk))
            done = Chunk(seq=1, done=True, finish_reason="stop")
            await self.nc.publish(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(done))
        await self.js.publish(
            subjects.result_subject(task.tenant_id, task.task_id), result_of(task, text, calls)
        )


def result_of(task: TaskSubmitted, text: str, calls: list[ToolCall] | None = None) -> bytes:
    """The task's result as the executor publishes it: `text`, or `calls`."""
    result = completed_of(
        task,
        text,
        model=MODEL,
        tool_calls=calls,
        finish_reason="tool_calls" if calls else "stop",
        usage=Usage(prompt_tokens=9, completion_tokens=3),
        latency_ms=5.0,
    )
    return encode(result, source="test")[1]


def _turn(message: ChatMessage) -> tuple[str, Any]:
    if message.tool_calls:
        return (message.role, [c.id for c in message.tool_calls])
    if message.role == "tool":
        return ("tool", (message.tool_call_id, message.content))
    return (message.role, message.content)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("stored-responses")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    acme = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    other = asyncio.run(make_org(db_url, "other", roles=("member",)))
    unstored = {"SWITCHYARD_RESPONSES_STORE": "false", "SWITCHYARD_INSTANCE": "gateway-unstored"}
    (tmp / "unstored").mkdir()
    try:
        with (
            gateways(server, db_url, tmp, count=2) as bases,
            gateways(server, db_url, tmp / "unstored", env=unstored) as (off,),
        ):
            yield World(server, list(bases), off, acme, other)
    finally:
        server.stop()


@pytest.fixture
async def responder(world: World) -> AsyncIterator[Responder]:
    nc = await nats.connect(world.server.url)
    me = Responder(nc)
    await nc.subscribe(subjects.TASK_SUBMITTED, cb=me.on_task)
    await nc.flush()
    yield me
    await nc.close()


async def test_a_conversation_continues_from_another_replica_and_is_read_back_and_deleted(
    world: World, responder: Responder
) -> None:
    one, two = world.client(world.acme, 0), world.client(world.acme, 1)
    first = await one.responses.create(
        model="auto", instructions="Be brief.", input="Hi", metadata={"ticket": "T-42"}
    )
    assert (first.store, first.previous_response_id) == (True, None)
    assert (first.instructions, first.metadata) == ("Be brief.", {"ticket": "T-42"})  # repeated as sent
    second = await two.responses.create(model="auto", input="And again?", previous_response_id=first.id)
    assert (second.store, second.previous_response_id) == (True, first.id)
    # the first's input and answer, then this one's; the first's instructions are not carried over
    assert responder.messages() == [("user", "Hi"), ("assistant", "answer 1"), ("user", "And again?")]
    # its answer sent back as well is an item twice: refused before any task, as OpenAI refuses it
    with pytest.raises(openai.BadRequestError) as twice:
        resent = [first.output[0].model_dump(exclude_none=True), {"role": "user", "content": "And again?"}]
        await two.responses.create(model="auto", input=resent, previous_response_id=first.id)  # type: ignore[arg-type]
    assert (twice.value.body["code"], twice.value.body["param"]) == ("duplicate_item", "input.0")  # type: ignore[index]

    assert (await one.responses.retrieve(second.id)).model_dump() == second.model_dump()
    items = [i.model_dump() async for i in one.responses.input_items.list(second.id)]  # newest first
    assert [(i["type"], i["role"]) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[1]["id"] == first.output[0].id  # the first's answer, under its own id
    assert len({i["id"] for i in items}) == 3
    page = await one.responses.input_items.list(second.id, order="asc", limit=1, after=items[2]["id"])
    assert [i.id for i in page.data] == [items[1]["id"]] and page.has_more

    deleted = await two.responses.delete(first.id)  # the SDK returns nothing; a second delete is a 404
    assert deleted is None
    with pytest.raises(openai.NotFoundError) as gone:
        await one.responses.retrieve(first.id)
    assert gone.value.body["code"] == "response_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await one.responses.delete(first.id)
    # the second's record holds its whole conversation: it still continues without the first
    await one.responses.create(model="auto", input="Once more?", previous_response_id=second.id)
    assert [t for t, _ in responder.messages()] == ["user", "assistant", "user", "assistant", "user"]
    with pytest.raises(openai.BadRequestError) as unknown:
        await one.responses.create(model="auto", input="?", previous_response_id=first.id)
    assert unknown.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    assert unknown.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_input_items_are_listed_in_openais_shape_however_the_input_was_written(
    world: World, responder: Responder
) -> None:
    """A message sent in the short form (`{"role", "content": "text"}`, no `type`: the SDKs' EasyInputMessage)
    is listed as OpenAI lists every input message: `type: message`, its text an `input_text` part (an
    assistant's an `output_text` part); before, it was listed as sent, which the SDK reads as no message."""
    one = world.client(world.acme, 0)
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    first = await one.responses.create(model="auto", input=[*short, {"role": "user", "content": "Bye"}])  # type: ignore[list-item]
    items = [
        i.model_dump(exclude_none=True) async for i in one.responses.input_items.list(first.id, order="asc")
    ]
    assert [(i["type"], i["role"], i["content"]) for i in items] == [
        ("message", "user", [{"type": "input_text", "text": "Hi"}]),
        ("message", "assistant", [{"type": "output_text", "text": "Hello", "annotations": []}]),
        ("message", "user", [{"type": "input_text", "text": "Bye"}]),
    ]
    second = await one.responses.create(model="auto", input="Again", previous_response_id=first.id)
    assert [t for t, _ in responder.messages()] == ["user", "assistant", "user", "assistant", "user"]
    listed = [i.model_dump(exclude_none=True) async for i in one.responses.input_items.list(second.id)]
    assert {i["type"] for i in listed} == {"message"} and len(listed) == 5
    assert all(isinstance(i["content"], list) for i in listed)


async def test_a_streamed_tool_call_is_stored_before_its_last_event_and_referenced_by_id(
    world: World, responder: Responder
) -> None:
    one, two = world.client(world.acme, 0), world.client(world.acme, 1)
    async with one.responses.stream(model="auto", input="Weather in Paris?", tools=[TOOL]) as stream:  # type: ignore[list-item]
        final = await stream.get_final_response()
    assert final.store
    [call] = [i for i in final.output if i.type == "function_call"]
    # read at once from the other replica: it was stored before response.completed went out
    assert (await two.responses.retrieve(final.id)).output[0].id == call.id
    # a turn without previous_response_id that names the question (an input item, by the id input_items
    # gave it) and the call (an output item) instead of sending them again
    [asked] = [i.id async for i in two.responses.input_items.list(final.id)]
    after = await two.responses.create(
        model="auto",
        input=[
            {"type": "item_reference", "id": asked},
            {"type": "item_reference", "id": call.id},
            {"type": "function_call_output", "call_id": call.call_id, "output": "21C"},
        ],
    )
    assert after.output_text == "answer 2"
    assert responder.messages() == [
        ("user", "Weather in Paris?"),
        ("assistant", [call.call_id]),
        ("tool", (call.call_id, "21C")),
    ]
    with pytest.raises(openai.NotFoundError) as missing:
        await two.responses.create(model="auto", input=[{"type": "item_reference", "id": f"{call.id}9"}])
    assert missing.value.body["code"] == "item_not_found"  # type: ignore[index]


async def test_codex_tool_loops_get_their_calls_back_as_codex_named_the_tools_and_send_them_again(
    world: World, responder: Responder
) -> None:
    """Codex's shapes: a namespace tool, the built-in web_search beside it, `store: false` and a stream;
    the next turn sends the whole conversation again, its call with its `namespace` (or, stored, names
    the response it continues); tools in an `additional_tools` item, a custom one among them."""
    agents = {"type": "namespace", "name": "multi_agent_v1", "tools": [{**TOOL, "name": "close_agent"}]}
    asked = {"type": "message", "id": "msg_01a24a00-3d27", "role": "user", "content": "Close a1."}
    body = {"model": "auto", "stream": True, "store": False, "tools": [agents, {"type": "web_search"}]}
    headers = {"authorization": f"Bearer {world.acme.keys['member']}"}
    async with httpx.AsyncClient(base_url=world.bases[1], headers=headers, timeout=30) as http:
        async with http.stream("POST", "/v1/responses", json={**body, "input": [asked]}) as streamed:
            lines = [line async for line in streamed.aiter_lines() if line.startswith("data: ")]
        events = [orjson.loads(line[6:]) for line in lines]
        [call] = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert (call["name"], call["namespace"]) == ("close_agent", "multi_agent_v1")
        assert [t.function.name for t in responder.seen[-1].chat().tools or []] == [
            "multi_agent_v1__close_agent"
        ]
        result = {"type": "function_call_output", "call_id": call["call_id"], "output": "closed"}
        again = await http.post("/v1/responses", json={**body, "input": [asked, call, result]})
        assert again.status_code == 200 and "event: response.completed" in again.text
        assert responder.messages() == [
            ("user", "Close a1."),
            ("assistant", [call["call_id"]]),
            ("tool", (call["call_id"], "closed")),
        ]
        assert responder.seen[-1].chat().messages[1].tool_calls[0].function.name == (  # type: ignore[index]
            "multi_agent_v1__close_agent"
        )
        # a model of Codex's own catalog: its tools in an `additional_tools` item, `exec` a custom tool
        exec_js = {"type": "custom", "name": "exec", "format": {"type": "text"}}
        lite = {
            "type": "additional_tools",
            "tools": [{"type": "namespace", "name": "functions", "tools": [exec_js]}],
        }
        answer = await http.post(
            "/v1/responses", json={**body, "stream": False, "tools": None, "input": [lite, asked]}
        )
        [script] = answer.json()["output"]
        assert (script["type"], script["name"], "namespace" in script) == ("custom_tool_call", "exec", False)
        stored = await http.post(
            "/v1/responses", json={**body, "stream": False, "store": True, "input": [asked]}
        )
        follow = {**body, "stream": False, "previous_response_id": stored.json()["id"]}
        [kept] = stored.json()["output"]
        done = {**result, "call_id": kept["call_id"]}
        assert (await http.post("/v1/responses", json={**follow, "input": [done]})).status_code == 200
        assert responder.seen[-1].chat().messages[1].tool_calls[0].function.name == (  # type: ignore[index]
            "multi_agent_v1__close_agent"
        )


async def test_nothing_is_kept_with_store_false_and_nothing_is_reachable_from_another_organisation(
    world: World, responder: Responder
) -> None:
    acme, other = world.client(world.acme), world.client(world.other, 1)
    unkept = await acme.responses.create(model="auto", input="Forget this", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        await acme.responses.retrieve(unkept.id)
    kept = await acme.responses.create(model="auto", input="A secret", tools=[TOOL])  # type: ignore[list-item]
    [call] = [i for i in kept.output if i.type == "function_call"]
    for reach in (
        other.responses.retrieve(kept.id),
        other.responses.delete(kept.id),
        other.responses.input_items.list(kept.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await reach
    with pytest.raises(openai.BadRequestError):
        await other.responses.create(model="auto", input="?", previous_response_id=kept.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.create(model="auto", input=[{"type": "item_reference", "id": call.id}])
    assert (await acme.responses.retrieve(kept.id)).id == kept.id  # still there for its own organisation
    async with httpx.AsyncClient(base_url=world.bases[0]) as http:
        metrics = (await http.get("/metrics")).text
    assert 'switchyard_gateway_stored_responses_total{outcome="not_asked"} 1.0' in metrics


async def test_a_deployment_that_stores_nothing_says_so(world: World, responder: Responder) -> None:
    off = world.client(world.acme, base=world.unstored)
    answer = await off.responses.create(model="auto", input="Hi", instructions="Be brief.")
    assert (answer.store, answer.instructions) == (False, "Be brief.")
    with pytest.raises(openai.BadRequestError) as refused:
        await off.responses.create(model="auto", input="And?", previous_response_id=answer.id)
    assert refused.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    async with httpx.AsyncClient(base_url=world.unstored) as http:
        r = await http.get(
            f"/v1/responses/{answer.id}", headers={"Authorization": f"Bearer {world.acme.keys['member']}"}
        )
        metrics = (await http.get("/metrics")).text
    assert r.status_code == 404 and "SWITCHYARD_RESPONSES_STORE=false" in r.json()["error"]["message"]
    stored = re.findall(r"^switchyard_gateway_stored_responses_total\{.*\} (\S+)$", metrics, re.M)
    assert stored and set(stored) == {"0.0"}  # at 0 from the start, and no request said `store: false`
    # what an earlier configuration (here: the other replicas) stored can still be deleted
    kept = await world.client(world.acme).responses.create(model="auto", input="Delete me later")
    with pytest.raises(openai.NotFoundError):
        await world.client(world.other, base=world.unstored).responses.delete(kept.id)
    await off.responses.delete(kept.id)  # was a 404 "this deployment stores no responses"
    with pytest.raises(openai.NotFoundError):
        await world.client(world.acme).responses.retrieve(kept.id)


async def test_input_tokens_counts_the_request_with_the_conversation_it_continues(
    world: World, responder: Responder
) -> None:
    client = world.client(world.acme)
    first = await client.responses.create(model="auto", input="What is the tallest mountain on Earth?")
    alone = await client.responses.input_tokens.count(model="auto", input="And the second tallest?")
    assert alone.object == "response.input_tokens"
    # the same count the router checks context windows with, over the same messages
    asked = ChatRequest(messages=[ChatMessage(role="user", content="And the second tallest?")])
    assert alone.input_tokens == count_prompt(asked)
    chained = await client.responses.input_tokens.count(
        input="And the second tallest?",
        previous_response_id=first.id,
        tools=[TOOL],  # type: ignore[list-item]
    )
    whole = ChatRequest(
        messages=[
            ChatMessage(role="user", content="What is the tallest mountain on Earth?"),
            ChatMessage(role="assistant", content=first.output_text),
            ChatMessage(role="user", content="And the second tallest?"),
        ],
        tools=[ToolSpec(function=FunctionSpec(name="get_weather", parameters={"type": "object"}))],
    )
    assert chained.input_tokens == count_prompt(whole)
    assert len(responder.seen) == 1  # counting ran no task
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.responses.input_tokens.count(input="?", previous_response_id="resp_" + "0" * 32)
    assert unknown.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


async def test_a_conversation_answered_on_two_replicas_at_once_keeps_both_turns_for_its_organisation(
    world: World, responder: Responder
) -> None:
    acme, other = world.client(world.acme), world.client(world.other, 1)
    conversation = await acme.conversations.create(items=[{"role": "user", "content": "Remember 7."}])
    answers = await asyncio.gather(
        *(
            world.client(world.acme, replica).responses.create(
                model="auto", input=f"question {replica}", conversation=conversation.id
            )
            for replica in (0, 1)
        )
    )
    items = [i async for i in acme.conversations.items.list(conversation.id, order="asc")]
    texts = [i.content[0].text for i in items]  # type: ignore[union-attr]
    assert len(items) == 5 and texts[0] == "Remember 7."
    for n, answer in enumerate(answers):  # each turn whole: its question, then its answer
        at = texts.index(f"question {n}")
        assert items[at + 1].id == answer.output[0].id
    for reach in (
        other.conversations.retrieve(conversation.id),
        other.conversations.update(conversation.id, metadata={"x": "y"}),
        other.conversations.delete(conversation.id),
        other.conversations.items.list(conversation.id),
        other.conversations.items.create(conversation.id, items=[{"role": "user", "content": "x"}]),
        other.conversations.items.retrieve(items[0].id, conversation_id=conversation.id),
        other.conversations.items.delete(items[0].id, conversation_id=conversation.id),
        other.responses.create(model="auto", input="?", conversation=conversation.id),
    ):
        with pytest.raises(openai.NotFoundError) as hidden:
            await reach
        assert hidden.value.code == "conversation_not_found"
    assert len([i async for i in acme.conversations.items.list(conversation.id)]) == 5  # unchanged
    off = world.client(world.acme, base=world.unstored)
    with pytest.raises(openai.BadRequestError) as refused:
        await off.responses.create(model="auto", input="?", conversation=conversation.id)
    assert refused.value.code == "unsupported_parameter"
    with pytest.raises(openai.NotFoundError) as none:
        await off.conversations.retrieve(conversation.id)
    assert "SWITCHYARD_RESPONSES_STORE=false" in none.value.message
    assert (await off.conversations.delete(conversation.id)).deleted  # what was kept can still be deleted
    with pytest.raises(openai.NotFoundError):
        await acme.conversations.retrieve(conversation.id)
