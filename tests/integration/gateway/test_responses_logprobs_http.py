"""Token log probabilities on `POST /v1/responses`, over HTTP on a gateway process, a real nats-server and
SQLite: a scripted responder plays the pipeline, answering each task with its text's tokens (on each chunk
of a stream, and whole on its result) when the task asked for them, as the executor does. Bodies are
checked as exact JSON and read with OpenAI's SDK types; the SDK is also the client once, as Codex-like
callers use it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskSubmitted, TokenLogprob, TopLogprob
from switchyard.common.streaming import Chunk, encode_chunk
from tests.integration.gateway.harness import auth
from tests.integration.gateway.responses_world import MODEL, World, answering, completed, publish, world

pytestmark = pytest.mark.integration
__all__ = ["world"]  # a fixture
INCLUDE = ["message.output_text.logprobs"]
EVENT = TypeAdapter(ResponseStreamEvent)

# "Paris…" in three tokens; the last holds part of a character, so its bytes are its own.
PIECES = [
    (
        "Par",
        [TokenLogprob(token="Par", logprob=-0.02, top_logprobs=[TopLogprob(token="Lyon", logprob=-4.1)])],
    ),
    (
        "is\u2026",
        [
            TokenLogprob(token="is", logprob=-0.001, top_logprobs=[TopLogprob(token="is", logprob=-0.001)]),
            TokenLogprob(token="\ufffd", logprob=-1.5, bytes=[226, 128]),
        ],
    ),
]
TOKENS = [t for _, tokens in PIECES for t in tokens]
PAR = {
    "token": "Par",
    "logprob": -0.02,
    "bytes": [80, 97, 114],
    "top_logprobs": [{"token": "Lyon", "logprob": -4.1, "bytes": [76, 121, 111, 110]}],
}
IS = {
    "token": "is",
    "logprob": -0.001,
    "bytes": [105, 115],
    "top_logprobs": [{"token": "is", "logprob": -0.001, "bytes": [105, 115]}],
}
PART = {"token": "\ufffd", "logprob": -1.5, "bytes": [226, 128], "top_logprobs": []}


class Responder:
    """Stands in for classifier+router+executor: answers "Paris…", with its tokens when asked (on each
    streamed chunk and on the result); `truncated` marks the result's as cut, as the executor marks them."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.seen: list[TaskSubmitted] = []
        self.truncated = False

    async def on_task(self, msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        asked = task.chat().logprobs
        if task.chat().stream:
            for seq, (piece, tokens) in enumerate(PIECES):
                chunk = Chunk(
                    seq=seq,
                    delta=piece,
                    model=MODEL if seq == 0 else None,
                    logprobs=tokens if asked else None,
                )
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk)
                )
            done = Chunk(seq=len(PIECES), done=True, finish_reason="stop")
            await self.nc.publish(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(done))
        result = completed(
            task,
            "Paris\u2026",
            completion_tokens=3,
            logprobs=TOKENS if asked else None,
            logprobs_truncated=asked and self.truncated,
        )
        await publish(self.nc, result)


@pytest.fixture
async def responder(world: World) -> AsyncIterator[Responder]:
    async with answering(world, Responder) as me:
        yield me


async def _post(world: World, **fields: Any) -> httpx.Response:
    _, base, org = world
    body = {"model": "auto", "input": "What is the capital of France?", **fields}
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.post(f"{base}/v1/responses", json=body, headers=auth(org.keys["member"]))


def _text_part(body: dict[str, Any]) -> dict[str, Any]:
    [message] = [i for i in body["output"] if i["type"] == "message"]
    part: dict[str, Any] = message["content"][0]
    return part


async def test_a_response_asked_for_logprobs_carries_each_token_with_its_alternatives(
    world: World, responder: Responder
) -> None:
    r = await _post(world, include=INCLUDE, top_logprobs=1)
    assert r.status_code == 200, r.text
    asked = responder.seen[-1].chat()
    assert (asked.logprobs, asked.top_logprobs) == (True, 1)
    body = r.json()
    assert _text_part(body) == {
        "type": "output_text",
        "text": "Paris\u2026",
        "annotations": [],
        "logprobs": [PAR, IS, PART],
    }
    assert "x-switchyard-logprobs" not in r.headers
    read = Response.model_validate(body)  # as OpenAI's SDK reads it
    assert read.output_text == "Paris\u2026"
    # a result whose entries were cut says so in a header
    responder.truncated = True
    cut = await _post(world, include=INCLUDE)
    assert cut.status_code == 200 and cut.headers["x-switchyard-logprobs"] == "truncated"


async def test_top_logprobs_without_the_include_entry_asks_for_nothing(
    world: World, responder: Responder
) -> None:
    r = await _post(world, top_logprobs=3)
    assert r.status_code == 200, r.text
    asked = responder.seen[-1].chat()
    assert (asked.logprobs, asked.top_logprobs) == (False, None)
    assert _text_part(r.json())["logprobs"] == []
    Response.model_validate(r.json())
    refused = await _post(world, include=INCLUDE, top_logprobs=21)
    assert refused.status_code == 400
    assert (refused.json()["error"]["param"], refused.json()["error"]["code"]) == (
        "top_logprobs",
        "invalid_value",
    )


async def test_a_streamed_response_gives_each_deltas_tokens_and_then_all_of_them(
    world: World, responder: Responder
) -> None:
    r = await _post(world, include=INCLUDE, top_logprobs=1, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [orjson.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    for event in events:
        EVENT.validate_python(event)  # each one as OpenAI's SDK reads it
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [(d["delta"], d["logprobs"]) for d in deltas] == [("Par", [PAR]), ("is\u2026", [IS, PART])]
    [done] = [e for e in events if e["type"] == "response.output_text.done"]
    assert (done["text"], done["logprobs"]) == ("Paris\u2026", [PAR, IS, PART])
    assert events[-1]["type"] == "response.completed"
    assert _text_part(events[-1]["response"])["logprobs"] == [PAR, IS, PART]


async def test_openais_sdk_asks_for_them_and_reads_them(world: World, responder: Responder) -> None:
    _, base, org = world
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys["member"], max_retries=0, timeout=30)
    response = await client.responses.create(
        model="auto",
        input="What is the capital of France?",
        include=["message.output_text.logprobs"],
        top_logprobs=1,
    )
    [part] = [c for item in response.output if item.type == "message" for c in item.content]
    assert part.type == "output_text" and part.logprobs is not None
    assert [(t.token, t.logprob, t.bytes) for t in part.logprobs] == [
        ("Par", -0.02, [80, 97, 114]),
        ("is", -0.001, [105, 115]),
        ("\ufffd", -1.5, [226, 128]),
    ]
    assert [t.token for t in part.logprobs[0].top_logprobs] == ["Lyon"]
    streamed: list[list[str]] = []
    async with client.responses.stream(
        model="auto",
        input="What is the capital of France?",
        include=["message.output_text.logprobs"],
        top_logprobs=1,
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                streamed.append([t.token for t in event.logprobs])
    assert streamed == [["Par"], ["is", "\ufffd"]]
    await client.close()
