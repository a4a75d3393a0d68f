"""What SWITCHYARD_LEGACY_SUBJECTS costs (common/legacy_subjects.py), on a real nats-server, off against on in
alternating rounds: a result stored (the copy after its ack), a streamed chunk (a second core publish), and
a gateway's listening for one task (the result subject, and for a stream the chunk subject: one
subscription each more). Process CPU (publisher's side) and wall time per operation.

    .venv/bin/python bench/legacy_subjects_bench.py [--results 2000] [--chunks 20000] [--listens 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import nats
import uvloop
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, legacy_subjects, subjects
from switchyard.common.events import TaskFailed
from switchyard.common.streaming import Chunk, encode_chunk

Op = Callable[[int], Awaitable[None]]


async def _timed(op: Op, n: int) -> tuple[float, float]:
    """CPU and wall microseconds per call of `op`, over `n` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        await op(i)
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def run(url: str, results: int, chunks: int, listens: int, rounds: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    body = encode_chunk(Chunk(seq=3, delta=" the capital of France is Paris"))

    def ops(on: bool) -> dict[str, tuple[Op, int]]:
        publisher = bus.EventPublisher(js, source="bench/executor", legacy_subjects=on)
        publish_chunk = legacy_subjects.both(nc) if on else nc.publish

        async def result(i: int) -> None:
            task_id = ids.new_id()
            failed = TaskFailed(
                task_id=task_id,
                tenant_id="acme",
                error_code="x",
                error_message="x",
                failed_at=datetime.now(UTC),
            )
            await publisher.publish(
                failed, subject=subjects.result_subject("acme", task_id), tenant_id="acme"
            )

        async def chunk(i: int) -> None:
            await publish_chunk(subjects.chunk_subject("acme", "t-bench"), body)

        async def nothing(_: Msg) -> None:
            return None

        async def listen(i: int) -> None:  # a streamed request's: its chunk and result subjects
            task_id = ids.new_id()
            subs = [
                await legacy_subjects.listen(nc, subject, nothing, previous=on, tenant_id="acme")
                for subject in (
                    subjects.chunk_subject("acme", task_id),
                    subjects.result_subject("acme", task_id),
                )
            ]
            for sub in subs:
                await sub.unsubscribe()

        return {"result": (result, results), "chunk": (chunk, chunks), "listen": (listen, listens)}

    seen: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for r in range(rounds):
        for on in (False, True) if r % 2 == 0 else (True, False):
            for name, (op, n) in ops(on).items():
                seen.setdefault((name, on), []).append(await _timed(op, n))
                await nc.flush()
    print("operation   setting  CPU us/op (median)  wall us/op (median)")
    for (name, on), got in sorted(seen.items()):
        cpu = statistics.median(c for c, _ in got)
        wall = statistics.median(w for _, w in got)
        print(f"{name:10}  {'on' if on else 'off':7}  {cpu:18.1f}  {wall:19.1f}")
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--listens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "js").start()
        try:
            uvloop.run(run(server.url, args.results, args.chunks, args.listens, args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
