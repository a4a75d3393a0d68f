"""Response cache hit latency with 10,000 answers cached for the tenant (exact and semantic).

    .venv/bin/python bench/cache_bench.py [--entries 10000] [--n 300] [--http]

Starts its own nats-server (JetStream) in a temporary folder. Fills the cache through the service layer:
10,000 answers in the KV bucket and 10,000 vectors in the embedded Qdrant Edge index (filler vectors are
random unit vectors; 20 real prompts are embedded with MiniLM). Then measures, one request at a time:

- service layer: `ResponseCache.lookup` for an exact hit, and for a paraphrase that misses the exact cache
  and hits the semantic one (MiniLM int8 embedding + Qdrant Edge search + KV read);
- with `--http`: the same hits through a real gateway process (`POST /v1/chat/completions`, keep-alive,
  limits and budgets off), from request to the last byte; the hit is also published on the bus there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import numpy as np

from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import bus
from switchyard.common.embedding.embedder import Embedder
from switchyard.common.embedding.model_files import ensure_built
from switchyard.common.events import ChatRequest, TaskCompleted, TaskSubmitted, Usage
from switchyard.common.ids import new_id
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.gateway.cache.backends import EdgeIndex
from switchyard.gateway.cache.exact import ExactStore, cache_bucket
from switchyard.gateway.cache.models import CacheConfig, Directive
from switchyard.gateway.cache.service import Configs, ResponseCache

QUESTIONS = [
    ("What is the capital of France?", "What's the capital city of France?"),
    ("How do I boil an egg?", "How can I boil an egg?"),
    ("Write a Python function to reverse a string", "Write a python function that reverses a string"),
    ("Explain what a hash table is.", "Explain what a hash table is, please."),
    ("What is the boiling point of water at sea level?", "At sea level, what is water's boiling point?"),
]
CONFIG = CacheConfig(enabled=True, semantic=True, ttl_s=3600, threshold=0.92)


def task(tenant: str, content: str) -> TaskSubmitted:
    request = ChatRequest.model_validate(
        {"model": "auto", "messages": [{"role": "user", "content": content}]}
    )
    return TaskSubmitted(task_id=new_id(), tenant_id=tenant, request=request, submitted_at=datetime.now(UTC))


def answer(t: TaskSubmitted) -> TaskCompleted:
    return TaskCompleted(
        task_id=t.task_id,
        tenant_id=t.tenant_id,
        model="local/smollm2-135m-instruct",
        provider="local",
        tier="local",
        content=f"answer of {t.task_id}",
        finish_reason="stop",
        usage=Usage(prompt_tokens=12, completion_tokens=20),
        attempts=1,
        latency_ms=500.0,
        completed_at=datetime.now(UTC),
    )


async def fill(cache: ResponseCache, tenant: str, entries: int) -> None:
    rng = np.random.default_rng(5)
    started = time.perf_counter()
    for i in range(entries):
        real = i < len(QUESTIONS)
        t = task(tenant, QUESTIONS[i][0] if real else f"filler prompt number {i}")
        found = await cache.lookup(tenant_id=tenant, plan="pro", task=t, directive=Directive(read=False))
        assert found is not None
        if not real:  # a random unit vector instead of 10k embeddings: the index size is what matters
            vector = rng.standard_normal(384).astype(np.float32)
            found.vector = vector / np.linalg.norm(vector)
        assert await cache.keep(found, answer(t))
    print(f"filled {entries} entries in {time.perf_counter() - started:.1f} s")


def report(name: str, samples: list[float], cpu: list[float] | None = None) -> None:
    ms = sorted(s * 1000 for s in samples)
    p = lambda q: ms[min(int(len(ms) * q), len(ms) - 1)]  # noqa: E731
    line = (
        f"{name:<34} n={len(ms):<4} p50 {statistics.median(ms):6.2f} ms p90 {p(0.9):6.2f} p99 {p(0.99):6.2f}"
    )
    if cpu:
        line += f"  (CPU p50 {statistics.median(cpu) * 1000:.2f} ms)"
    print(line)


async def service_layer(cache: ResponseCache, tenant: str, n: int) -> None:
    for kind, pick in (("exact", 0), ("semantic", 1)):
        samples, cpu = [], []
        for i in range(n):
            t = task(tenant, QUESTIONS[i % len(QUESTIONS)][pick])
            started, cpu_started = time.perf_counter(), time.process_time()
            found = await cache.lookup(tenant_id=tenant, plan="pro", task=t, directive=Directive())
            samples.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)  # this process, all threads
            assert found is not None and found.hit is not None and found.hit.kind == kind, (kind, t)
        report(f"service layer, {kind} hit", samples, cpu)
    assert cache.embedder is not None and cache.index is not None
    embedder, index = cache.embedder, cache.index
    text = QUESTIONS[0][1]
    vector = embedder.embed([text]).vectors[0]
    parts = {
        "  of which: MiniLM embedding": lambda: embedder.embed([text]),
        "  of which: Qdrant Edge search": lambda: index.search(
            vector, tenant_id=tenant, scope=found.scope or "", threshold=0.92, now=time.time()
        ),
    }
    samples = []
    for i in range(n):  # answering a hit: the completed task published on the bus (JetStream ack)
        t = task(tenant, QUESTIONS[i % len(QUESTIONS)][0])
        found = await cache.lookup(tenant_id=tenant, plan="pro", task=t, directive=Directive())
        started = time.perf_counter()
        await cache.answer(t, found)
        samples.append(time.perf_counter() - started)
    report("recording a hit (publish + ack)", samples)
    for name, call in parts.items():
        samples, cpu = [], []
        for _ in range(n):
            started, cpu_started = time.perf_counter(), time.process_time()
            call()
            samples.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        report(name, samples, cpu)


async def prepare_http(db_url: str) -> tuple[str, str]:
    from switchyard.common.db import create_engine, sessionmaker
    from switchyard.gateway.db import migrations
    from switchyard.gateway.tenants import create_api_key, create_tenant, create_user

    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    tenant = await create_tenant(sessions, name="bench", plan="enterprise")
    user = await create_user(sessions, tenant_id=tenant.id, email="bench@bench.test", role="admin")
    key, _ = await create_api_key(sessions, tenant_id=tenant.id, name="bench", user_id=user.id)
    await engine.dispose()
    return tenant.id, key


def through_http(base: str, key: str, n: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=10, headers=headers) as http:
        samples = []
        for _ in range(n):  # the floor: an authenticated request that does no work
            started = time.perf_counter()
            assert http.get("/v1/models").status_code == 200
            samples.append(time.perf_counter() - started)
        report("HTTP floor, GET /v1/models", samples)
        for kind, pick in (("exact", 0), ("semantic", 1)):
            samples = []
            for i in range(n):
                body = {"model": "auto", "messages": [{"role": "user", "content": QUESTIONS[i % 5][pick]}]}
                started = time.perf_counter()
                reply = http.post("/v1/chat/completions", json=body)
                samples.append(time.perf_counter() - started)
                assert reply.status_code == 200, reply.text
                assert reply.headers.get("x-switchyard-cache-kind") == kind, reply.headers
            report(f"HTTP (gateway process), {kind} hit", samples)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--http", action="store_true", help="also measure through a gateway process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cache-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = NatsServer(tmp / "jetstream").start()
        db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
        try:
            tenant, key = await prepare_http(db_url) if args.http else ("bench", "")
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await bus.ensure_streams(js)
            await announce(await providers_bucket(js), ProviderStatus(provider="local"))  # the catalogue
            files = ensure_built()[0]
            index = EdgeIndex(tmp / "var" / "cache" / "semantic-gateway")
            cache = ResponseCache(
                store=ExactStore(await cache_bucket(js, max_ttl_s=7 * 24 * 3600)),
                configs=Configs(CONFIG),
                events=bus.EventPublisher(js, source="bench"),
                index=index,
                embedder=Embedder(files.int8, files.tokenizer, threads=1),
            )
            await fill(cache, tenant, args.entries)
            started = time.perf_counter()
            index.wait_optimized()  # the optimiser runs in the background after every 500 new entries
            index.optimize()  # and indexes the last few hundred now
            info = index.info()
            print(f"indexed (HNSW) in {time.perf_counter() - started:.1f} s: {info}")
            await service_layer(cache, tenant, args.n)
            await cache.close()
            await nc.close()
            if args.http:
                run_gateway(server.url, db_url, tmp, key, args.n)
        finally:
            server.stop()


def run_gateway(nats_url: str, db_url: str, tmp: Path, key: str, n: int) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SWITCHYARD_NATS_URL": nats_url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_HTTP_PORT": str(port),
        "SWITCHYARD_VAR_DIR": str(tmp / "var"),
        "SWITCHYARD_CACHE_ENABLED": "true",
        "SWITCHYARD_LIMITS_ENABLED": "false",
        "SWITCHYARD_BUDGETS_ENABLED": "false",
        "SWITCHYARD_LOG_LEVEL": "WARNING",
    }
    base = f"http://127.0.0.1:{port}"
    with open(tmp / "gateway.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "switchyard.gateway"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "gateway.log").read_text()[-3000:])
            time.sleep(0.2)
        through_http(base, key, n)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    asyncio.run(main())
