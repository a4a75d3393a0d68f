"""Gateways as real processes on a real nats-server and SQLite, for the gateway's integration tests."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import nats
import numpy as np

from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import bus, subjects, vectors
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode, encode
from switchyard.common.events import EmbeddingRequest, TaskCompleted, TaskFailed, TaskSubmitted, Usage
from switchyard.common.events.base import EventPayload
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.gateway.db import migrations
from switchyard.gateway.tenants import create_api_key, create_tenant, create_user
from tests.support.procs import service_process

# One priced model: output $0.50 per 1K tokens, so max_tokens=100 reserves exactly $0.05 (PRICED_BODY) and
# the Answerer's 2 output tokens cost $0.001.
PRICED_POLICY = """
version: "test-priced"
models:
  - id: local/smollm2-135m-instruct
    provider: local
    upstream: smollm2-135m-instruct
    tier: local
    input_per_1k: 0.0
    output_per_1k: 0.5
    context_window: 8192
"""
PRICED_BODY = {
    "model": "auto",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "capital of France?"}],
}


@dataclass
class Org:
    id: str
    name: str
    keys: dict[str, str] = field(default_factory=dict)  # role -> plaintext key
    users: dict[str, str] = field(default_factory=dict)  # role -> user id


async def make_org(
    db_url: str, name: str, *, roles: tuple[str, ...] = ("admin",), plan: str = "enterprise", **org: object
) -> Org:
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        tenant = await create_tenant(sessions, name=name, plan=plan, **org)  # type: ignore[arg-type]
        made = Org(tenant.id, name)
        for role in roles:
            user = await create_user(sessions, tenant_id=tenant.id, email=f"{role}@{name}.test", role=role)
            key, _ = await create_api_key(sessions, tenant_id=tenant.id, name=role, user_id=user.id)
            made.keys[role], made.users[role] = key, user.id
        return made
    finally:
        await engine.dispose()


async def prepare_bus(nats_url: str, db_url: str) -> None:
    await migrations().upgrade(db_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await announce(await providers_bucket(js), ProviderStatus(provider="local"))
    await nc.close()


class Bases(list[str]):
    """The replicas' base URLs, and their processes (to kill one)."""

    procs: list[subprocess.Popen[bytes]]


@contextmanager
def gateways(
    nats_server: NatsServer, db_url: str, tmp_path: Path, *, count: int = 1, env: dict[str, str] | None = None
) -> Iterator[Bases]:
    """`count` gateway replicas sharing the bus and the database; yields their base URLs."""
    asyncio.run(prepare_bus(nats_server.url, db_url))
    bases = Bases()
    bases.procs = []
    with ExitStack() as stack:
        for i in range(count):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            full_env = {
                "SWITCHYARD_NATS_URL": nats_server.url,
                "SWITCHYARD_DATABASE_URL": db_url,
                "SWITCHYARD_HTTP_PORT": str(port),
                "SWITCHYARD_TASK_TIMEOUT_S": "3",
                "SWITCHYARD_MAX_BODY_BYTES": "65536",
                "SWITCHYARD_INSTANCE": f"gateway-{i}",
                **(env or {}),
            }
            proc = stack.enter_context(
                service_process(
                    "switchyard.gateway",
                    env=full_env,
                    log_path=tmp_path / f"gateway-{i}.log",
                    ready_url=f"{base}/healthz",
                )
            )
            bases.append(base)
            bases.procs.append(proc)
        yield bases


@contextmanager
def gateway_stack(
    tmp: Path, *, count: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[NatsServer, str, Bases]]:
    """A nats-server, SQLite (`tmp`/switchyard.db) and `count` gateway replicas (with `env`): the server,
    the database's URL and the replicas' base URLs; all stopped after."""
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    try:
        with gateways(server, db_url, tmp, count=count, env=env) as bases:
            yield server, db_url, bases
    finally:
        server.stop()


@contextmanager
def priced_stack(tmp: Path, *, count: int, env: dict[str, str]) -> Iterator[tuple[NatsServer, str, Bases]]:
    """A nats-server, SQLite and `count` gateway replicas serving PRICED_POLICY (with `env`)."""
    policy = tmp / "policy.yaml"
    policy.write_text(PRICED_POLICY)
    with gateway_stack(tmp, count=count, env={"SWITCHYARD_POLICY_PATH": str(policy), **env}) as stack:
        yield stack


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_a_fresh_minute(needed_s: float = 25.0) -> None:
    """The request windows are whole UTC minutes: start where the test fits in one."""
    left = 60 - time.time() % 60
    if left < needed_s:
        time.sleep(left + 0.2)


# The fake pipeline's vectors when a task asks for no length (MiniLM's, the local embedding model's).
EMBED_DIMENSIONS = 384


def fake_vectors(request: EmbeddingRequest) -> np.ndarray:
    """The vectors the Answerer gives an embedding task: row i from input i's SHA-256 (so a test recomputes
    them from the texts it sent), as float32, `dimensions` long (EMBED_DIMENSIONS when not asked)."""
    dims = request.dimensions or EMBED_DIMENSIONS
    rows = [
        np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8])).standard_normal(
            dims
        )
        for text in request.input
    ]
    return np.asarray(rows, dtype="<f4")


class Answerer:
    """Stands in for the pipeline: answers every submitted task (2 output tokens; an embedding task with
    `fake_vectors`, one prompt token per input, kept as the executor keeps them: inline when small, else in
    the object store), at once or when `release` is called; with `fail`, fails each with that error code
    instead. The first `begin` streamed tasks held get their first chunk at once."""

    def __init__(self, nc: nats.NATS, *, hold: bool = False) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.seen: list[TaskSubmitted] = []
        self.held: list[TaskSubmitted] = []
        self.hold = hold
        self.fail: str | None = None
        self.begin = 0
        self.model = "local/smollm2-135m-instruct"  # the model that answers
        self.content = "Paris"  # the answer's text
        self.usage = Usage(prompt_tokens=9, completion_tokens=2)  # the answer's
        self.prompt_usage: Usage | None = None  # the count the first chunk carries, as the executor's does
        self._begun: set[str] = set()

    @classmethod
    async def start(cls, url: str, *, hold: bool = False, vectors_ttl_s: float = 600) -> Answerer:
        nc = await nats.connect(url)
        me = cls(nc, hold=hold)
        await vectors.open_store(me.js, ttl_s=vectors_ttl_s, max_bytes=256 * 1024 * 1024, replicas=1)
        await nc.subscribe(subjects.TASK_SUBMITTED, cb=me._on_task)
        await nc.flush()  # the server has the subscription before the test submits
        return me

    async def _on_task(self, msg: nats.aio.msg.Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        if self.hold:
            self.held.append(task)
            if task.embedding() is None and task.chat().stream and len(self._begun) < self.begin:
                self._begun.add(task.task_id)
                await self._chunk(task, 0)
        else:
            await self.answer(task)

    async def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for task in held:
            await self.answer(task)

    async def answer(self, task: TaskSubmitted) -> None:
        if self.fail is not None:
            failed = TaskFailed(
                task_id=task.task_id,
                tenant_id=task.tenant_id,
                error_code=self.fail,
                error_message=f"the pipeline failed the task: {self.fail}",
                failed_at=datetime.now(UTC),
            )
            await self._result(failed)
            return
        if (request := task.embedding()) is not None:
            await self._result(await self._vectors(task, request))
            return
        if task.chat().stream:
            for seq in range(1 if task.task_id in self._begun else 0, 2):
                await self._chunk(task, seq)
            done_chunk = Chunk(seq=2, done=True, finish_reason="stop")
            await self.nc.publish(
                subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(done_chunk)
            )
        done = TaskCompleted(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            user_id=task.user_id,  # as the executor does
            model=self.model,
            provider=self.model.partition("/")[0],
            tier="local",
            content=self.content,
            finish_reason="stop",
            usage=self.usage,
            attempts=1,
            latency_ms=1.0,
            completed_at=datetime.now(UTC),
        )
        await self._result(done)

    async def _vectors(self, task: TaskSubmitted, request: EmbeddingRequest) -> TaskCompleted:
        rows = fake_vectors(request)
        name = vectors.object_name(task.tenant_id, task.task_id)
        kept = await vectors.keep(
            self.js,
            rows.tobytes(),
            count=rows.shape[0],
            dimensions=rows.shape[1],
            name=name,
            batch=bool(task.batch),  # as the executor keeps a batch line's
        )
        return TaskCompleted(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            user_id=task.user_id,
            model=request.model,
            provider=request.model.partition("/")[0],
            tier="local",
            content="",
            finish_reason="stop",
            usage=Usage(prompt_tokens=len(request.input), completion_tokens=0),
            attempts=1,
            latency_ms=1.0,
            provider_ms=0.5,
            completed_at=datetime.now(UTC),
            embedding=kept,
        )

    async def _result(self, outcome: TaskCompleted | TaskFailed) -> None:
        _, raw = encode(outcome, source="test")
        await self.js.publish(subjects.result_subject(outcome.tenant_id, outcome.task_id), raw)

    async def _chunk(self, task: TaskSubmitted, seq: int) -> None:
        named = self.model if seq == 0 else None  # as the executor names it
        chunk = Chunk(
            seq=seq, delta=["Par", "is"][seq], model=named, usage=self.prompt_usage if seq == 0 else None
        )
        await self.nc.publish(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk))

    async def close(self) -> None:
        await self.nc.close()


E = TypeVar("E", bound=EventPayload)


async def stored_events(url: str, subject: str, kind: type[E]) -> tuple[list[E], bytes]:
    """Every event of `kind` stored on `subject` so far, and their raw bytes (to grep for secrets)."""
    nc = await nats.connect(url)
    sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
    seen: list[E] = []
    raw = b""
    while True:
        try:
            msg = await sub.next_msg(timeout=1.0)
        except nats.errors.TimeoutError:
            break
        raw += msg.data
        seen.append(decode(msg.data, (kind,))[1])  # type: ignore[arg-type]
    await nc.close()
    return seen, raw
