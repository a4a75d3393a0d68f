"""Classifier speed on the bus: a real nats-server, the classifier as its own process, tasks over JetStream.

    .venv/bin/python bench/classifier_bench.py [--single 300] [--burst 3000] [--threads 1]

Prints p50/p90/p99 of single tasks (publish -> TaskClassified received, one in flight; and the service's own
`latency_ms`), then tasks/s for a burst of concurrent tasks (micro-batched). Prompts are drawn from the
training pool (real lengths), or synthetic ones when the pool is absent. Goals (issue 3): p50 <= 5 ms per
single task, >= 300 tasks/s with batching on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import ChatRequest, TaskClassified, TaskSubmitted

POOL = Path("/work/shared/data/classifier/train_pool.jsonl")


def prompts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    if POOL.is_file():
        rows = [
            json.loads(line)["prompt"]
            for line in POOL.read_text(encoding="utf-8").split("\n")
            if line.strip()
        ]
        return [rng.choice(rows) for _ in range(n)]
    words = [
        "please",
        "write",
        "explain",
        "summarise",
        "the",
        "function",
        "data",
        "why",
        "how",
        "code",
        "story",
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(n)]


def task(i: int, prompt: str) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=f"bench{i}",
        tenant_id="bench",
        request=ChatRequest(messages=[{"role": "user", "content": prompt}]),
        submitted_at=datetime.now(UTC),
    )


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def run(url: str, single: int, burst: int) -> dict[str, float]:
    nc = await nats.connect(url)
    publisher = bus.EventPublisher(nc.jetstream(), source="bench/gateway")
    waiting: dict[str, asyncio.Future[TaskClassified]] = {}

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        _, payload = decode(msg.data, (TaskClassified,))
        assert isinstance(payload, TaskClassified)
        fut = waiting.pop(payload.task.task_id, None)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    await nc.subscribe(subjects.TASK_CLASSIFIED, cb=on_msg)
    loop = asyncio.get_running_loop()

    async def one(i: int, prompt: str, timeout: float = 30.0) -> TaskClassified:
        fut: asyncio.Future[TaskClassified] = loop.create_future()
        waiting[f"bench{i}"] = fut
        await publisher.publish(task(i, prompt), tenant_id="bench")
        return await asyncio.wait_for(fut, timeout)

    texts = prompts(single + burst)
    for i in range(20):  # warm-up
        await one(10_000_000 + i, texts[i])
    rtts, service = [], []
    for i in range(single):
        started = time.perf_counter()
        out = await one(i, texts[i])
        rtts.append((time.perf_counter() - started) * 1000)
        service.append(out.classification.latency_ms)

    started = time.perf_counter()
    await asyncio.gather(*(one(single + i, texts[single + i], timeout=600.0) for i in range(burst)))
    took = time.perf_counter() - started
    await nc.close()
    return {
        "single_rtt_p50_ms": statistics.median(rtts),
        "single_rtt_p90_ms": pct(rtts, 0.9),
        "single_rtt_p99_ms": pct(rtts, 0.99),
        "single_service_p50_ms": statistics.median(service),
        "burst_tasks": burst,
        "burst_seconds": took,
        "burst_tasks_per_s": burst / took,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads in the service")
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="classifier-bench-") as tmp:
        server = NatsServer(Path(tmp) / "js").start()
        env = {
            **os.environ,
            "SWITCHYARD_NATS_URL": server.url,
            "SWITCHYARD_CLASSIFIER_THREADS": str(args.threads),
            "SWITCHYARD_CLASSIFIER_MAX_BATCH": str(args.max_batch),
            "SWITCHYARD_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
        }
        log = open(Path(tmp) / "classifier.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "switchyard.classifier"], env=env, stdout=log, stderr=log
        )
        try:
            asyncio.run(_ready(server.url))
            results = asyncio.run(run(server.url, args.single, args.burst))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            log.close()
            server.stop()
    print(f"classifier bench (threads={args.threads}, max batch={args.max_batch}, cores={os.cpu_count()})")
    for key, value in results.items():
        print(f"  {key:24s} {value:10.2f}")


async def _ready(url: str) -> None:
    nc = await nats.connect(url)
    deadline = time.monotonic() + 120
    while True:
        try:
            await nc.request(subjects.ping_subject("classifier"), b"", timeout=0.5)
            break
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    await nc.close()


if __name__ == "__main__":
    main()
