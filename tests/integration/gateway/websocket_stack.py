"""The stack the Responses WebSocket mode's tests share (test_responses_websocket.py): a nats-server,
SQLite and four gateway processes (plain; storing nothing, connections of 2 s; tightly bounded; one a test
stops), a scripted responder playing the pipeline, and a WebSocket client's steps (`ws_turn`: one
response.create and its events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import orjson
import pytest
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection, connect

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import FunctionCall, TaskSubmitted, ToolCall
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import Bases, Org, gateways, make_org
from tests.integration.gateway.test_stored_responses_http import Responder as StoredResponder
from tests.integration.gateway.test_stored_responses_http import result_of

MODEL = "openai/gpt-4o-mini"
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")
# the nats-server, a gateway, the organisation, `unstored`, `bounded`, and `stopping` (stopped by a test)
World = tuple[NatsServer, str, Org, str, str, Bases]


class Responder(StoredResponder):
    """The stored responses tests' responder (a call of the first tool offered on a user turn, else text),
    and a user turn "hang" answered with one chunk and no end."""

    running: set[asyncio.Task[None]] = set()

    async def _slowly(self, task: TaskSubmitted) -> None:
        """ "so", and 1.5 s later its end: with a call of the first tool offered, if any."""
        subject = subjects.chunk_subject(task.tenant_id, task.task_id)
        await self.nc.publish(subject, encode_chunk(Chunk(seq=0, delta="so", model=MODEL)))
        await asyncio.sleep(1.5)
        tools = task.chat().tools or []
        calls = [
            ToolCall(id="call_slow", function=FunctionCall(name=t.function.name, arguments="{}"))
            for t in tools[:1]
        ]
        done = Chunk(seq=1, done=True, finish_reason="tool_calls" if calls else "stop")
        await self.nc.publish(subject, encode_chunk(done))
        await self.js.publish(
            subjects.result_subject(task.tenant_id, task.task_id), result_of(task, "so", calls or None)
        )

    async def on_task(self, msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        last = task.chat().messages[-1]
        if last.role == "user" and last.content == "slow":
            self.seen.append(task)
            slow = asyncio.create_task(self._slowly(task))  # the subscription's next tasks go on meanwhile
            self.running.add(slow)
            slow.add_done_callback(self.running.discard)
            return
        if last.role != "user" or last.content != "hang":
            await super().on_task(msg)
            return
        self.seen.append(task)
        chunk = Chunk(seq=0, delta="a long story", model=MODEL)
        await self.nc.publish(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("responses-ws")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    # a replica that stores no responses, whose connections last 2 s
    unstored = {"SWITCHYARD_RESPONSES_STORE": "false", "SWITCHYARD_RESPONSES_WS_MAX_S": "2"}
    # a replica whose connections idle 1 s at most, 2 a key, each keeping a response of 2,000 bytes at most
    bounded = {
        "SWITCHYARD_RESPONSES_WS_IDLE_S": "1",
        "SWITCHYARD_RESPONSES_WS_PER_KEY": "2",
        "SWITCHYARD_RESPONSES_WS_KEPT_BYTES": "2000",
        "SWITCHYARD_RESPONSES_WS_STREAMS": "2",
    }
    for name in ("unstored", "bounded", "stopping"):
        (tmp / name).mkdir()
    try:
        with (
            gateways(server, db_url, tmp) as (base,),
            gateways(server, db_url, tmp / "unstored", env=unstored) as (off,),
            gateways(server, db_url, tmp / "bounded", env=bounded) as (tight,),
            gateways(server, db_url, tmp / "stopping", env={"SWITCHYARD_STOP_GRACE_S": "6"}) as stopping,
        ):
            yield server, base, org, off, tight, stopping
    finally:
        server.stop()


@pytest.fixture
async def responder(world: World) -> AsyncIterator[Responder]:
    nc = await nats.connect(world[0].url)
    me = Responder(nc)
    await nc.subscribe(subjects.TASK_SUBMITTED, cb=me.on_task)
    await nc.flush()
    yield me
    await nc.close()


def ws_url(world: World, base: str | None = None) -> str:
    return (base or world[1]).replace("http://", "ws://") + "/v1/responses"


def ws_socket(world: World, key: str | None = None, *, base: str | None = None) -> Any:
    key = world[2].keys["member"] if key is None else key
    headers = {"Authorization": f"Bearer {key}"}
    return connect(ws_url(world, base), additional_headers=headers, open_timeout=5)


async def ws_turn(ws: ClientConnection, **create: Any) -> list[dict[str, Any]]:
    """One `response.create` and its events, up to its last."""
    await ws.send(orjson.dumps({"type": "response.create", **create}).decode())
    return await ws_events(ws)


async def ws_send(ws: ClientConnection, **create: Any) -> None:
    await ws.send(orjson.dumps({"type": "response.create", **create}).decode())


async def ws_streams(ws: ClientConnection, count: int) -> dict[str | None, list[dict[str, Any]]]:
    """The events of `count` responses sent on streams, each stream's in the order received (those of
    none under ""), and the order the responses ended in (under None)."""
    events: dict[str | None, list[dict[str, Any]]] = {None: []}
    while len(events[None]) < count:
        event = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        events.setdefault(event.get("stream_id", ""), []).append(event)
        if event["type"] in TERMINAL:
            events[None].append(event)
    return events


async def ws_events(ws: ClientConnection) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] not in TERMINAL:
        frame = await asyncio.wait_for(ws.recv(), timeout=10)
        assert isinstance(frame, str)  # text frames, as OpenAI sends them
        events.append(orjson.loads(frame))
    return events
