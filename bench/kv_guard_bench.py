"""What kv_guard's header-aware KV reads cost against nats-py's, on a real nats-server (one client, one
bucket of `--keys` keys of ~100 bytes): a read of each key (kv_guard.read: a message get, `STREAM.MSG.GET`;
nats-py's `KeyValue.get`: a direct get), and a watch's initial values (kv_guard.watch vs
`KeyValue.watchall`), each the best of `--rounds`.

    .venv/bin/python bench/kv_guard_bench.py [--keys 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import uvloop
from nats.js.kv import KeyValue

from switchyard.cli.processes import NatsServer
from switchyard.common import kv_guard


async def best(rounds: int, once: Callable[[], Awaitable[None]]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await once()
        times.append(time.perf_counter() - started)
    return min(times)


async def initial(watcher: KeyValue.KeyWatcher, count: int) -> int:
    """Until `count` values came (the end-of-initial-values marker may come early: kv.keys)."""
    n = 0
    async for entry in watcher:
        n += entry is not None
        if n == count:
            break
    await watcher.stop()  # type: ignore[no-untyped-call]
    return n


async def run(url: str, count: int, rounds: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    bucket = await js.create_key_value(bucket="bench-kv-guard")
    keys = [f"t.org-{i:06d}" for i in range(count)]
    for key in keys:
        await bucket.put(
            key, b'{"tenant_id": "%s", "status": "active", "at": "2026-12-07T00:00:00+00:00"}' % key.encode()
        )

    async def nats_py_gets() -> None:
        for key in keys:
            await bucket.get(key)

    async def guarded_reads() -> None:
        for key in keys:
            await kv_guard.read(bucket, key)

    async def nats_py_watch() -> None:
        assert await initial(await bucket.watchall(), count) == count

    async def guarded_watch() -> None:
        assert await initial(await kv_guard.watch(bucket), count) == count

    for name, once in (
        ("read: nats-py KeyValue.get (direct get)", nats_py_gets),
        ("read: kv_guard.read (STREAM.MSG.GET)", guarded_reads),
        ("watch initial values: nats-py watchall", nats_py_watch),
        ("watch initial values: kv_guard.watch", guarded_watch),
    ):
        seconds = await best(rounds, once)
        print(f"{name:45s} {seconds / count * 1e6:8.1f} us/entry ({count} entries, {seconds:.3f} s)")
    await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nats-port", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "js", port=args.nats_port).start()
        try:
            uvloop.run(run(server.url, args.keys, args.rounds))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
