"""Classifier speed on the bus: a real nats-server, the classifier as its own process, tasks over JetStream.

    .venv/bin/python bench/classifier_bench.py [--single 300] [--seconds 20] [--concurrency 256] [--threads 2]
        [--precision int8-l5|int8|int8-fused|fp32] [--max-tokens 64] [--replicas 2] [--reuse 4096]

Single: one task in flight, p50/p90/p99 from publish to the TaskClassified event received (and the
service's own `latency_ms`). Sustained: `--concurrency` tasks kept in flight for `--seconds` (micro-batched in
the service): completed tasks/s. Both phases also report the classifier process's CPU ms per task (from
/proc, summed over `--replicas` processes sharing the durable consumer), which a busy shared machine distorts
far less than wall time, and the load average around each phase.
Prompts are drawn from the training pool (real lengths), or synthetic ones when the pool is absent. The
service classifies every task (its reuse of a tenant's repeated prompt is off unless `--reuse N`): the
drawn prompts repeat, and what is measured is the encoder path.
Goals (issue 3): p50 <= 5 ms per single task, >= 300 tasks/s with batching on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from typing import Any

import nats
from measure import cpu_seconds

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
    words = ["please", "write", "explain", "summarise", "the", "function", "data", "why", "how", "code"]
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


def load1() -> float:
    return os.getloadavg()[0]


async def run(url: str, pids: list[int], single: int, seconds: float, concurrency: int) -> dict[str, Any]:
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

    texts = prompts(4096)
    for i in range(20):  # warm-up
        await one(10_000_000 + i, texts[i])

    out: dict[str, Any] = {"single_load_before": load1()}
    rtts, service = [], []
    cpu0 = cpu_seconds(pids)
    for i in range(single):
        started = time.perf_counter()
        got = await one(i, texts[i % len(texts)])
        rtts.append((time.perf_counter() - started) * 1000)
        service.append(got.classification.latency_ms)
    out |= {
        "single_tasks": single,
        "single_rtt_p50_ms": statistics.median(rtts),
        "single_rtt_p90_ms": pct(rtts, 0.9),
        "single_rtt_p99_ms": pct(rtts, 0.99),
        "single_service_p50_ms": statistics.median(service),
        "single_cpu_ms_per_task": (cpu_seconds(pids) - cpu0) * 1000 / single,
        "single_load_after": load1(),
    }

    # Sustained: `concurrency` workers each submit the next task as soon as theirs is classified.
    counter = itertools.count(single)
    done = 0
    out["sustained_load_before"] = load1()
    cpu0 = cpu_seconds(pids)
    started = time.perf_counter()
    stop_at = started + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            i = next(counter)
            await one(i, texts[i % len(texts)], timeout=60.0)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - started
    out |= {
        "sustained_concurrency": concurrency,
        "sustained_tasks": done,
        "sustained_seconds": took,
        "sustained_tasks_per_s": done / took,
        "sustained_cpu_ms_per_task": (cpu_seconds(pids) - cpu0) * 1000 / max(done, 1),
        "sustained_load_after": load1(),
    }
    await nc.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the sustained phase")
    parser.add_argument("--concurrency", type=int, default=256, help="tasks in flight, sustained phase")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads in the service")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--precision", default=None, help="encoder file (SWITCHYARD_CLASSIFIER_PRECISION)")
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="tokens per prompt (SWITCHYARD_CLASSIFIER_MAX_TOKENS)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="classifier processes sharing the durable consumer"
    )
    parser.add_argument(
        "--reuse",
        type=int,
        default=0,
        help="predictions the service keeps for repeated prompts (SWITCHYARD_CLASSIFIER_REUSE_SIZE); 0, the "
        "default here, classifies every task: the drawn prompts repeat, and this measures the encoder path",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="classifier-bench-") as tmp:
        server = NatsServer(Path(tmp) / "js").start()
        env = {
            **os.environ,
            "SWITCHYARD_NATS_URL": server.url,
            "SWITCHYARD_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
            "SWITCHYARD_CLASSIFIER_REUSE_SIZE": str(args.reuse),
        }
        if args.threads is not None:
            env["SWITCHYARD_CLASSIFIER_THREADS"] = str(args.threads)
        if args.max_batch is not None:
            env["SWITCHYARD_CLASSIFIER_MAX_BATCH"] = str(args.max_batch)
        if args.precision is not None:
            env["SWITCHYARD_CLASSIFIER_PRECISION"] = args.precision
        if args.max_tokens is not None:
            env["SWITCHYARD_CLASSIFIER_MAX_TOKENS"] = str(args.max_tokens)
        log = open(Path(tmp) / "classifier.log", "wb")  # noqa: SIM115
        procs = [
            subprocess.Popen([sys.executable, "-m", "switchyard.classifier"], env=env, stdout=log, stderr=log)
            for _ in range(args.replicas)
        ]
        pids = [p.pid for p in procs]
        try:
            asyncio.run(_ready(server.url, pids))
            results = asyncio.run(run(server.url, pids, args.single, args.seconds, args.concurrency))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=15)
            log.close()
            server.stop()
    settings = (
        f"threads={args.threads or 'default'}, max batch={args.max_batch or 'default'}, "
        f"precision={args.precision or 'default'}, max tokens={args.max_tokens or 'default'}, "
        f"replicas={args.replicas}, reuse={args.reuse}"
    )
    print(f"classifier bench ({settings}, cores={os.cpu_count()})")
    for key, value in results.items():
        print(f"  {key:28s} {value:10.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


async def _ready(url: str, pids: list[int]) -> None:
    """Until every replica answers the service's ping (each one replies with its pid)."""
    nc = await nats.connect(url)
    answered: set[int] = set()

    async def on_reply(msg: nats.aio.msg.Msg) -> None:
        if msg.data:
            answered.add(int(json.loads(msg.data)["pid"]))

    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=on_reply)
    deadline = time.monotonic() + 120
    while not set(pids) <= answered:
        if time.monotonic() > deadline:
            missing = sorted(set(pids) - answered)
            raise TimeoutError(f"classifier replicas {missing} did not answer their ping")
        await nc.publish(subjects.ping_subject("classifier"), b"", reply=inbox)
        await asyncio.sleep(0.3)
    await nc.close()


if __name__ == "__main__":
    main()
