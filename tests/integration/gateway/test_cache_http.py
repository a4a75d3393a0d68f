"""The response cache through the gateway's HTTP API (a real gateway process with the cache on, the real
embedder and the embedded Qdrant Edge index), with the real billing and audit services behind it: a hit
is answered without a task reaching the pipeline, replays as SSE, is billed at zero provider cost with its
tokens marked cached, and is recorded in the ledger; another tenant never gets it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.models import LedgerEntry
from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.models import UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.tenants import create_api_key, create_user
from tests.integration.gateway.harness import Answerer, Org, auth, gateways, make_org
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration
QUESTION = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"
SMOL = "local/smollm2-135m-instruct"


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **fields}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, str, Org, Org]]:
    tmp = tmp_path_factory.mktemp("cache")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(billing_migrations().upgrade(db_url))
    asyncio.run(audit_migrations().upgrade(db_url))
    common = {
        "SWITCHYARD_NATS_URL": server.url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_VAR_DIR": str(tmp),
    }
    services = [
        BusService("billing", env=common, log_path=tmp / "billing.log"),
        BusService(
            "audit", env={**common, "SWITCHYARD_AUDIT_SIGNING_KEY": "33" * 32}, log_path=tmp / "audit.log"
        ),
    ]
    policy = tmp / "guardrails.yaml"
    policy.write_text("plans:\n  free: {pii_output: true}\n")
    env = {
        "SWITCHYARD_CACHE_ENABLED": "true",
        "SWITCHYARD_VAR_DIR": str(tmp / "var"),
        "SWITCHYARD_GUARDRAILS_PATH": str(policy),
    }
    try:
        with gateways(server, db_url, tmp, env=env) as bases:
            acme = asyncio.run(make_org(db_url, "acme"))
            globex = asyncio.run(make_org(db_url, "globex"))
            for service in services:
                asyncio.run(service.start())
            yield server, db_url, bases[0], acme, globex
    finally:
        for service in services:
            service.stop()
        server.stop()


@pytest.fixture
async def answerer(stack: tuple[NatsServer, str, str, Org, Org]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


async def _rows(db_url: str, model: Any, where: Any, expected: int, timeout: float = 30.0) -> list[Any]:
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with sessionmaker(engine)() as session:
                rows = list((await session.execute(select(model).where(where))).scalars())
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def test_hits_skip_the_pipeline_stay_in_their_tenant_and_are_billed_at_zero(
    stack: tuple[NatsServer, str, str, Org, Org], answerer: Answerer
) -> None:
    _, db_url, base, acme, globex = stack
    a, g = auth(acme.keys["admin"]), auth(globex.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        first = await http.post("/v1/chat/completions", json=chat(QUESTION), headers=a)
        assert first.status_code == 200, first.text
        assert first.headers["x-switchyard-cache"] == "miss"
        assert len(answerer.seen) == 1

        exact = await http.post("/v1/chat/completions", json=chat(QUESTION), headers=a)
        assert exact.status_code == 200, exact.text
        assert exact.headers["x-switchyard-cache"] == "hit"
        assert exact.headers["x-switchyard-cache-kind"] == "exact"
        assert exact.json()["choices"][0]["message"]["content"] == "Paris"
        assert exact.json()["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        assert exact.headers["x-switchyard-task-id"] != first.headers["x-switchyard-task-id"]
        # as a plain answer does: its own time (all of it: no provider) and its stages
        assert float(exact.headers["x-switchyard-overhead-ms"]) > 0
        assert exact.headers["server-timing"].startswith("prep;dur=")

        near = await http.post("/v1/chat/completions", json=chat(PARAPHRASE), headers=a)
        assert near.headers["x-switchyard-cache-kind"] == "semantic"
        assert float(near.headers["x-switchyard-cache-similarity"]) >= 0.92

        async with http.stream(
            "POST", "/v1/chat/completions", json=chat(QUESTION, stream=True), headers=a
        ) as streamed:
            assert streamed.headers["x-switchyard-cache"] == "hit"
            assert streamed.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in streamed.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        deltas = [orjson.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines[:-1]]
        assert "".join(d for d in deltas if d) == "Paris"
        assert len(answerer.seen) == 1, "no hit reached the pipeline"

        # globex: the paraphrase is not answered with acme's answer; then the question finds globex's own
        # paraphrase (semantic), never acme's exact entry
        other = await http.post("/v1/chat/completions", json=chat(PARAPHRASE), headers=g)
        assert other.status_code == 200 and other.headers["x-switchyard-cache"] == "miss"
        assert [t.tenant_id for t in answerer.seen[1:]] == [globex.id]
        own = await http.post("/v1/chat/completions", json=chat(QUESTION), headers=g)
        assert own.headers["x-switchyard-cache-kind"] == "semantic" and len(answerer.seen) == 2

        # opting out: no-cache asks the pipeline again; an unknown directive is a 400
        fresh = await http.post(
            "/v1/chat/completions", json=chat(QUESTION), headers={**a, "x-switchyard-cache": "no-cache"}
        )
        assert fresh.headers["x-switchyard-cache"] == "bypass" and len(answerer.seen) == 3
        # and so does the standard request header (RFC 9111), which an HTTP client may send on its own
        standard = await http.post(
            "/v1/chat/completions", json=chat(QUESTION), headers={**a, "cache-control": "no-cache"}
        )
        assert standard.headers["x-switchyard-cache"] == "bypass" and len(answerer.seen) == 4
        bad = await http.post(
            "/v1/chat/completions", json=chat(QUESTION), headers={**a, "x-switchyard-cache": "sometimes"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-switchyard-cache"

        # the Anthropic face: a repeated Messages request is a hit too, replayed as Anthropic's stream
        anthropic = {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi there"}]}
        miss = await http.post("/v1/messages", json=anthropic, headers=a)
        assert miss.status_code == 200 and miss.headers["x-switchyard-cache"] == "miss"
        seen = len(answerer.seen)
        hit = await http.post("/v1/messages", json=anthropic, headers=a)
        assert hit.headers["x-switchyard-cache"] == "hit" and hit.json()["content"][0]["text"] == "Paris"
        async with http.stream(
            "POST", "/v1/messages", json={**anthropic, "stream": True}, headers=a
        ) as replay:
            assert replay.headers["x-switchyard-cache"] == "hit"
            body = "".join([chunk async for chunk in replay.aiter_text()])
        assert "event: message_stop" in body and '"text":"Paris"' in body.replace(" ", "")
        assert len(answerer.seen) == seen

        metrics = (await http.get("/metrics")).text
        assert 'switchyard_gateway_cache_total{kind="exact",outcome="hit"} 4.0' in metrics
        assert 'switchyard_gateway_cache_total{kind="semantic",outcome="hit"} 2.0' in metrics

    hits = [exact.headers["x-switchyard-task-id"], near.headers["x-switchyard-task-id"]]
    usage = await _rows(db_url, UsageEntry, UsageEntry.task_id.in_(hits), 2)
    assert sorted((u.provider, float(u.cost_usd), u.prompt_tokens, u.completion_tokens) for u in usage) == [
        ("cache", 0.0, 9, 2),
        ("cache", 0.0, 9, 2),
    ]
    resources = [f"task/{t}" for t in hits]
    ledger = await _rows(db_url, LedgerEntry, LedgerEntry.resource.in_(resources), 4)
    completes = {e.resource: orjson.loads(e.details) for e in ledger if e.action == "task.complete"}
    assert completes[f"task/{hits[0]}"]["cache"]["kind"] == "exact"
    assert completes[f"task/{hits[1]}"]["cache"]["kind"] == "semantic"
    assert completes[f"task/{hits[0]}"]["cache"]["source_task_id"] == first.headers["x-switchyard-task-id"]
    billed = [orjson.loads(e.details) for e in ledger if e.action == "billing.usage"]
    assert len(billed) == 2 and all(b["cached"] is True and b["cost_usd"] == 0 for b in billed)
    assert all(e.tenant_id == acme.id for e in ledger)
    theirs = f"task/{own.headers['x-switchyard-task-id']}"
    (entry,) = await _rows(
        db_url, LedgerEntry, (LedgerEntry.resource == theirs) & (LedgerEntry.action == "task.complete"), 1
    )
    assert entry.tenant_id == globex.id
    assert orjson.loads(entry.details)["cache"]["source_task_id"] == answerer.seen[1].task_id


def test_the_embedded_index_lives_under_the_var_dir(stack: tuple[NatsServer, str, str, Org, Org]) -> None:
    var = Path(stack[1].removeprefix("sqlite+aiosqlite:///")).parent / "var" / "cache"
    assert [p.name for p in var.iterdir()] == ["semantic-gateway-0"]


async def test_a_request_for_logprobs_bypasses_the_cache(
    stack: tuple[NatsServer, str, str, Org, Org], answerer: Answerer
) -> None:
    """A stored answer has no token log probabilities: a request for them always reaches the pipeline
    (counted as a bypass, as several answers are), even when the same question is stored."""
    question = "Which river runs through Paris?"
    a = auth(stack[3].keys["admin"])

    def bypasses(metrics: str) -> float:
        line = 'switchyard_gateway_cache_total{kind="any",outcome="bypass"} '
        return next((float(x[len(line) :]) for x in metrics.splitlines() if x.startswith(line)), 0.0)

    async with httpx.AsyncClient(base_url=stack[2], timeout=10) as http:
        stored = await http.post("/v1/chat/completions", json=chat(question), headers=a)
        assert stored.headers["x-switchyard-cache"] == "miss"
        before = bypasses((await http.get("/metrics")).text)
        seen = len(answerer.seen)
        for _ in range(2):
            asked = await http.post("/v1/chat/completions", json=chat(question, logprobs=True), headers=a)
            assert asked.status_code == 200, asked.text
            assert "x-switchyard-cache" not in asked.headers
        assert len(answerer.seen) == seen + 2 and all(t.chat().logprobs for t in answerer.seen[seen:])
        assert bypasses((await http.get("/metrics")).text) == before + 2
        again = await http.post("/v1/chat/completions", json=chat(question), headers=a)
        assert again.headers["x-switchyard-cache"] == "hit"


async def test_a_key_with_an_allow_list_gets_no_answer_of_a_model_outside_it(
    stack: tuple[NatsServer, str, str, Org, Org], answerer: Answerer
) -> None:
    """The cache is the organisation's, but an answer from a model a key may not use is a miss for it."""
    _, _, base, acme, _ = stack
    admin = auth(acme.keys["admin"])
    question = chat("Which river runs through Vienna?")
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        keys = {}
        for name, models in (("wide", ["auto", SMOL]), ("narrow", ["auto", "openai/gpt-6-luna"])):
            made = await http.post("/v1/admin/keys", json={"name": name, "models": models}, headers=admin)
            keys[name] = auth(made.json()["key"])
        first = await http.post("/v1/chat/completions", json=question, headers=admin)
        wide = await http.post("/v1/chat/completions", json=question, headers=keys["wide"])
        narrow = await http.post("/v1/chat/completions", json=question, headers=keys["narrow"])
    assert first.headers["x-switchyard-cache"] == "miss" and first.headers["x-switchyard-model"] == SMOL
    assert wide.headers["x-switchyard-cache"] == "hit"
    assert narrow.status_code == 200 and narrow.headers["x-switchyard-cache"] == "miss"
    assert [t.allowed_models for t in answerer.seen] == [None, ["auto", "openai/gpt-6-luna"]]


async def test_a_hit_passes_the_output_guardrails_of_the_user_it_answers(
    stack: tuple[NatsServer, str, str, Org, Org], answerer: Answerer
) -> None:
    """The cache is the organisation's, output guardrails the user's plan's: an answer stored unredacted
    for a user on a plan without `pii_output` is redacted when it answers one on a plan with it."""
    _, db_url, base, _, _ = stack
    org = await make_org(db_url, "initech")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        user = await create_user(
            sessions, tenant_id=org.id, email="free@initech.test", role="member", plan="free"
        )
        key, _ = await create_api_key(sessions, tenant_id=org.id, name="free", user_id=user.id)
    finally:
        await engine.dispose()
    question = chat("Who do I write to about invoices?")
    answerer.content = "Write to billing@initech.test"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            stored = await http.post("/v1/chat/completions", json=question, headers=auth(org.keys["admin"]))
            hit = await http.post("/v1/chat/completions", json=question, headers=auth(key))
            streamed = await http.post(
                "/v1/chat/completions", json={**question, "stream": True}, headers=auth(key)
            )
    finally:
        answerer.content = "Paris"
    assert stored.json()["choices"][0]["message"]["content"] == "Write to billing@initech.test"
    assert hit.headers["x-switchyard-cache"] == streamed.headers["x-switchyard-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == "Write to [REDACTED_EMAIL]"
    assert "billing@initech.test" not in streamed.text and "[REDACTED_EMAIL]" in streamed.text


async def test_an_answer_is_kept_as_the_model_gave_it_not_as_one_user_was_shown_it(
    stack: tuple[NatsServer, str, str, Org, Org], answerer: Answerer
) -> None:
    """The other way round: an answer first asked by a user whose plan redacts is kept unredacted (each
    hit is screened for its reader), so a user on a plan without `pii_output` gets what the model said,
    not another plan's redaction of it."""
    _, db_url, base, _, _ = stack
    org = await make_org(db_url, "umbrella")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        user = await create_user(
            sessions, tenant_id=org.id, email="free@umbrella.test", role="member", plan="free"
        )
        key, _ = await create_api_key(sessions, tenant_id=org.id, name="free", user_id=user.id)
    finally:
        await engine.dispose()
    question = chat("Whom do I write to about refunds?")
    answerer.content = "Write to refunds@umbrella.test"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            redacted = await http.post("/v1/chat/completions", json=question, headers=auth(key))
            hit = await http.post("/v1/chat/completions", json=question, headers=auth(org.keys["admin"]))
            again = await http.post("/v1/chat/completions", json=question, headers=auth(key))
    finally:
        answerer.content = "Paris"
    assert redacted.json()["choices"][0]["message"]["content"] == "Write to [REDACTED_EMAIL]"
    assert hit.headers["x-switchyard-cache"] == again.headers["x-switchyard-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == "Write to refunds@umbrella.test"
    assert again.json()["choices"][0]["message"]["content"] == "Write to [REDACTED_EMAIL]"
