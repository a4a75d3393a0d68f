"""Token log probabilities through the gateway's HTTP faces, on a real nats-server with the gateway as its
own process: the test plays the pipeline, answering each task with its tokens' log probabilities (in the
result and in its stream's chunks) when the task asked. Chat completions and legacy completions, whole and
streamed, several answers, the truncation header, output guardrails withholding them, the task API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.events import Choice, TaskCompleted, TaskSubmitted, TokenLogprob, TopLogprob, Usage
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import Answerer, Org, auth, gateways, make_org

pytestmark = pytest.mark.integration

MODEL = "local/smollm2-135m-instruct"
LEAK = "bob@example.org"  # an answer holding it is redacted for a tenant whose answers are screened


def _tokens(texts: list[str], top: int | None) -> list[TokenLogprob]:
    """Each text as a token, with `top` alternatives: itself first, then made-up others."""
    return [
        TokenLogprob(
            token=text,
            logprob=-0.5 * (i + 1),
            top_logprobs=(
                [TopLogprob(token=text, logprob=-0.5 * (i + 1))]
                + [TopLogprob(token=f"alt{k}", logprob=-3.0 - k) for k in range(1, top)]
                if top
                else []
            ),
        )
        for i, text in enumerate(texts)
    ]


class LogprobsAnswerer(Answerer):
    """Answers a chat task "Paris" (tokens "Par", "is"), or with the leak when the prompt asks for an
    email; the second answer of several "Oslo". Each answer's tokens come with their log probabilities when
    the task asked, in its stream's chunks too; a prompt saying "long" gets a result cut short
    (`logprobs_truncated`)."""

    async def answer(self, task: TaskSubmitted) -> None:
        request = task.chat()
        pieces = ["Mail ", LEAK] if "email" in request.prompt_text() else ["Par", "is"]
        tokens = _tokens(pieces, request.top_logprobs) if request.logprobs else None
        if request.stream:
            for seq, piece in enumerate(pieces):
                chunk = Chunk(
                    seq=seq,
                    delta=piece,
                    model=MODEL if seq == 0 else None,
                    logprobs=None if tokens is None else tokens[seq : seq + 1],
                )
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk)
                )
            end = Chunk(seq=len(pieces), done=True, finish_reason="stop")
            await self.nc.publish(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(end))
        others = [
            Choice(content="Oslo", finish_reason="stop", logprobs=_tokens(["Oslo"], request.top_logprobs))
            for _ in range(request.n - 1)
        ]
        long = "long" in request.prompt_text() and tokens is not None
        done = TaskCompleted(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            user_id=task.user_id,
            model=MODEL,
            provider="local",
            tier="local",
            content="".join(pieces),
            finish_reason="stop",
            usage=Usage(prompt_tokens=9, completion_tokens=len(pieces)),
            attempts=1,
            latency_ms=1.0,
            completed_at=datetime.now(UTC),
            other_choices=others
            if request.logprobs
            else [c.model_copy(update={"logprobs": None}) for c in others],
            logprobs=tokens[:1] if long and tokens else tokens,
            logprobs_truncated=long,
        )
        await self._result(done)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, Org, Org]]:
    """A gateway whose "screened" tenant (plan pro) has its answers' personal data redacted."""
    tmp = tmp_path_factory.mktemp("logprobs")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    acme = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    screened = asyncio.run(make_org(db_url, "screened", roles=("member",), plan="pro"))
    policy = tmp / "guardrails.yaml"
    policy.write_text(yaml.safe_dump({"plans": {"pro": {"pii_output": True}}}))
    try:
        with gateways(server, db_url, tmp, env={"SWITCHYARD_GUARDRAILS_PATH": str(policy)}) as (base,):
            yield server, base, acme, screened
    finally:
        server.stop()


@pytest.fixture
async def answerer(world: tuple[NatsServer, str, Org, Org]) -> AsyncIterator[LogprobsAnswerer]:
    me = await LogprobsAnswerer.start(world[0].url)
    assert isinstance(me, LogprobsAnswerer)
    yield me
    await me.close()


def _chat(text: str, **extra: object) -> dict[str, object]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


def _events(r: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", r.text
    return [orjson.loads(line) for line in lines[:-1]]


def _content(logprobs: dict[str, Any] | None) -> list[tuple[str, list[int], list[str]]] | None:
    """A chat choice's `logprobs` as (token, bytes, alternatives' tokens) each."""
    if logprobs is None:
        return None
    assert logprobs["refusal"] is None
    return [(t["token"], t["bytes"], [a["token"] for a in t["top_logprobs"]]) for t in logprobs["content"]]


async def test_chat_completions_return_each_answers_tokens_whole_and_streamed(
    world: tuple[NatsServer, str, Org, Org], answerer: LogprobsAnswerer
) -> None:
    _, base, acme, _ = world
    headers = auth(acme.keys["member"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        whole = await c.post(
            "/v1/chat/completions",
            json=_chat("Capital?", logprobs=True, top_logprobs=2, n=2),
            headers=headers,
        )
        plain = await c.post("/v1/chat/completions", json=_chat("Capital?"), headers=headers)
        streamed = await c.post(
            "/v1/chat/completions", json=_chat("Capital?", logprobs=True, stream=True), headers=headers
        )
        alone = await c.post("/v1/chat/completions", json=_chat("Capital?", top_logprobs=2), headers=headers)
    assert whole.status_code == 200, whole.text
    first, second = whole.json()["choices"]
    assert _content(first["logprobs"]) == [
        ("Par", [80, 97, 114], ["Par", "alt1"]),
        ("is", [105, 115], ["is", "alt1"]),
    ]
    assert first["logprobs"]["content"][0]["top_logprobs"][1] == {
        "token": "alt1",
        "logprob": -4.0,
        "bytes": [97, 108, 116, 49],
    }
    assert _content(second["logprobs"]) == [("Oslo", [79, 115, 108, 111], ["Oslo", "alt1"])]
    assert "x-switchyard-logprobs" not in whole.headers
    assert plain.status_code == 200 and plain.json()["choices"][0]["logprobs"] is None

    chunks = [ch for body in _events(streamed) for ch in body["choices"]]
    texts = [(ch["delta"].get("content"), _content(ch["logprobs"])) for ch in chunks]
    assert texts == [("Par", [("Par", [80, 97, 114], [])]), ("is", [("is", [105, 115], [])]), (None, None)]
    assert alone.status_code == 400 and alone.json()["error"]["param"] == "top_logprobs"
    asked, not_asked, _ = answerer.seen  # the refused request never became a task
    assert (asked.chat().logprobs, asked.chat().top_logprobs, not_asked.chat().logprobs) == (True, 2, False)


async def test_a_result_cut_short_says_so_in_a_header(
    world: tuple[NatsServer, str, Org, Org], answerer: LogprobsAnswerer
) -> None:
    _, base, acme, _ = world
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        r = await c.post(
            "/v1/chat/completions",
            json=_chat("A long answer?", logprobs=True),
            headers=auth(acme.keys["member"]),
        )
    assert r.status_code == 200 and r.headers["x-switchyard-logprobs"] == "truncated"
    assert [t["token"] for t in r.json()["choices"][0]["logprobs"]["content"]] == ["Par"]


async def test_legacy_completions_return_tokens_alternatives_and_offsets(
    world: tuple[NatsServer, str, Org, Org], answerer: LogprobsAnswerer
) -> None:
    _, base, acme, _ = world
    headers = auth(acme.keys["member"])
    body = {"model": "auto", "prompt": "Capital?"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        whole = await c.post("/v1/completions", json={**body, "logprobs": 2, "n": 2}, headers=headers)
        chosen = await c.post("/v1/completions", json={**body, "logprobs": 0}, headers=headers)
        streamed = await c.post(
            "/v1/completions", json={**body, "logprobs": 1, "stream": True}, headers=headers
        )
        refused = await c.post("/v1/completions", json={**body, "logprobs": 6}, headers=headers)
    assert whole.status_code == 200, whole.text
    first, second = whole.json()["choices"]
    assert first["logprobs"] == {
        "tokens": ["Par", "is"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"Par": -0.5, "alt1": -4.0}, {"is": -1.0, "alt1": -4.0}],
        "text_offset": [0, 3],
    }
    assert second["text"] == "Oslo" and second["logprobs"]["tokens"] == ["Oslo"]
    assert chosen.json()["choices"][0]["logprobs"]["top_logprobs"] == [{"Par": -0.5}, {"is": -1.0}]
    assert [(t.chat().logprobs, t.chat().top_logprobs) for t in answerer.seen] == [
        (True, 2),
        (True, 0),
        (True, 1),
    ]
    chunks = [ch for b in _events(streamed) for ch in b["choices"]]
    assert [(ch["text"], ch["logprobs"] and ch["logprobs"]["text_offset"]) for ch in chunks] == [
        ("Par", [0]),
        ("is", [3]),
        ("", None),
    ]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "logprobs"


async def test_output_guardrails_withhold_the_tokens_of_an_answer_they_change(
    world: tuple[NatsServer, str, Org, Org], answerer: LogprobsAnswerer
) -> None:
    _, base, _, screened = world
    headers = auth(screened.keys["member"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        leaky = await c.post(
            "/v1/chat/completions", json=_chat("Your email?", logprobs=True), headers=headers
        )
        clean = await c.post(
            "/v1/chat/completions", json=_chat("Capital?", logprobs=True, stream=True), headers=headers
        )
        long = await c.post(
            "/v1/chat/completions", json=_chat("A long answer?", logprobs=True, stream=True), headers=headers
        )
    assert leaky.status_code == 200, leaky.text
    choice = leaky.json()["choices"][0]
    assert choice["message"]["content"] == "Mail [REDACTED_EMAIL]" and choice["logprobs"] is None
    assert LEAK not in leaky.text
    # screened answers stream whole: the one chunk of text carries all its tokens, and a cut is known in time
    texts = [ch for b in _events(clean) for ch in b["choices"] if ch["delta"].get("content")]
    assert [(ch["delta"]["content"], [t[0] for t in _content(ch["logprobs"]) or []]) for ch in texts] == [
        ("Paris", ["Par", "is"])
    ]
    assert "x-switchyard-logprobs" not in clean.headers
    assert long.headers["x-switchyard-logprobs"] == "truncated"


async def test_the_task_api_passes_logprobs_through_and_returns_them(
    world: tuple[NatsServer, str, Org, Org], answerer: LogprobsAnswerer
) -> None:
    _, base, acme, _ = world
    headers = auth(acme.keys["member"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        submitted = await c.post(
            "/v1/tasks", json=_chat("Capital?", logprobs=True, top_logprobs=1), headers=headers
        )
        assert submitted.status_code == 202, submitted.text
        deadline = time.monotonic() + 10
        while (state := (await c.get(f"/v1/tasks/{submitted.json()['id']}", headers=headers)).json())[
            "status"
        ] == "queued" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        refused = await c.post("/v1/tasks", json=_chat("Capital?", top_logprobs=1), headers=headers)
    assert state["status"] == "completed", state
    result = state["result"]
    assert [(t["token"], t["logprob"]) for t in result["logprobs"]] == [("Par", -0.5), ("is", -1.0)]
    assert result["logprobs_truncated"] is False
    assert (answerer.seen[0].chat().logprobs, answerer.seen[0].chat().top_logprobs) == (True, 1)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "top_logprobs"


async def test_the_openai_sdk_reads_them_on_both_faces(
    world: tuple[NatsServer, str, Org, Org], answerer: LogprobsAnswerer
) -> None:
    _, base, acme, _ = world
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=acme.keys["member"], max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Capital?"}]
    async with client:
        chat = await client.chat.completions.create(
            model="auto", messages=messages, logprobs=True, top_logprobs=2
        )
        stream = await client.chat.completions.create(
            model="auto", messages=messages, logprobs=True, stream=True
        )
        streamed = [c.choices[0].logprobs async for c in stream if c.choices and c.choices[0].logprobs]
        legacy = await client.completions.create(model="auto", prompt="Capital?", logprobs=1)
    content = chat.choices[0].logprobs and chat.choices[0].logprobs.content
    assert content and [(t.token, t.bytes, len(t.top_logprobs)) for t in content] == [
        ("Par", [80, 97, 114], 2),
        ("is", [105, 115], 2),
    ]
    assert [t.token for lp in streamed for t in lp.content or []] == ["Par", "is"]
    logprobs = legacy.choices[0].logprobs
    assert logprobs is not None and (logprobs.tokens, logprobs.text_offset) == (["Par", "is"], [0, 3])
