"""What one consumer-lag sample (`common/lag.py`: `lag.sample`) costs on a real nats-server: the executor's
durable consumer with `--pending` events waiting and as many delivered and not acked (so both ages are
read), events of `--size` bytes; wall time per sample, median and 95th percentile of `--samples`, one
client, as a service samples (one consumer after another, every 10 s). `--cluster`: on a 3-node cluster
with R3 streams (as Kubernetes runs them: deploy/k8s), the client on a node that may lead nothing.

    .venv/bin/python bench/lag_bench.py [--samples 300] [--pending 20] [--size 1000] [--port N] [--cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js import api

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, lag, subjects

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.chaos.cluster import NatsCluster


async def measure(url: str, *, samples: int, pending: int, size: int, replicas: int) -> list[float]:
    nc = await nats.connect(url, max_reconnect_attempts=0)
    js = nc.jetstream()
    deadline = time.monotonic() + 30
    while True:  # a cluster elects its JetStream meta leader after its servers are up
        try:
            await bus.ensure_streams(js, replicas=replicas)
            break
        except nats.errors.Error:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    executor = subjects.EXECUTOR_CONSUMER
    config = api.ConsumerConfig(
        name=executor.durable, durable_name=executor.durable, filter_subject=executor.filter_subject,
        ack_policy=api.AckPolicy.EXPLICIT, ack_wait=3600,
    )  # fmt: skip
    await js.add_consumer(executor.stream, config=config)
    body = b"x" * size
    for _ in range(2 * pending):
        await js.publish(subjects.TASK_SUBMITTED, body)  # another consumer's events between the executor's
        await js.publish(executor.filter_subject, body)
    sub = await js.pull_subscribe_bind(executor.durable, stream=executor.stream)
    await sub.fetch(pending, timeout=5)  # delivered, not acked: the oldest unacked age is read too
    for _ in range(10):
        await lag.sample(js, executor)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await lag.sample(js, executor)
        times.append((time.perf_counter() - started) * 1000)
    await nc.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--pending", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--cluster", action="store_true")
    args = parser.parse_args()
    options = {"samples": args.samples, "pending": args.pending, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        if args.cluster:
            cluster = NatsCluster(Path(tmp) / "cluster").start()
            try:
                times = asyncio.run(measure(cluster.url, replicas=3, **options))
            finally:
                cluster.stop()
        else:
            server = NatsServer(Path(tmp) / "jetstream", port=args.port).start()
            try:
                times = asyncio.run(measure(server.url, replicas=1, **options))
            finally:
                server.stop()
    p95 = statistics.quantiles(times, n=20)[18]
    where = "3-node cluster, R3" if args.cluster else "one server"
    median = statistics.median(times)
    print(f"lag.sample, {where}, {args.size} B events: median {median:.2f} ms, p95 {p95:.2f} ms")


if __name__ == "__main__":
    main()
