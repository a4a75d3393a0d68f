"""What reading an object through `objects.read` costs (its meta and chunks by message gets,
`STREAM.MSG.GET`, so the stored headers show and forged ones are refused; the digest checked) against the
read before the guard (chunks by direct gets, which show the server's headers, not the stored ones: no
check) and nats-py's `ObjectStore.get` (an ordered consumer, digest checked), on a real nats-server (one
client, objects of `--sizes` MiB in 128 KiB chunks), each the best of `--rounds`.

    .venv/bin/python bench/objects_read_bench.py [--sizes 0.125,1,25] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import uvloop
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from switchyard.cli.processes import NatsServer
from switchyard.common import objects

BUCKET = "bench-objects"


async def best(rounds: int, once: Callable[[], Awaitable[bytes]], size: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert len(await once()) == size
        times.append(time.perf_counter() - started)
    return min(times)


async def direct_gets(js: JetStreamContext, name: str) -> bytes:
    """The read before the guard: the last meta, then each chunk by a direct get of the next on its
    subject."""
    info = await objects.describe(js, BUCKET, name)
    stream, subject, after, out = f"OBJ_{BUCKET}", f"$O.{BUCKET}.C.{info.nuid}", 0, []
    for _ in range(info.chunks or 0):
        try:
            msg = await js.get_msg(stream, after + 1, subject=subject, direct=True, next=True)
        except NotFoundError:
            raise objects.ObjectGone(name) from None
        after = msg.seq or 0
        out.append(msg.data or b"")
    return b"".join(out)


async def run(url: str, sizes: list[float], rounds: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    store = await js.create_object_store(BUCKET)
    for mib in sizes:
        size = int(mib * 1024 * 1024)
        name = f"object-{mib}"
        await store.put(name, os.urandom(size))

        async def guarded(name: str = name) -> bytes:
            return await objects.read(js, BUCKET, name)

        async def unguarded(name: str = name) -> bytes:
            return await direct_gets(js, name)

        async def nats_py(name: str = name) -> bytes:
            return (await store.get(name)).data or b""

        for label, once in (
            ("objects.read (message gets, headers, digest)", guarded),
            ("direct gets (before the guard)", unguarded),
            ("nats-py ObjectStore.get", nats_py),
        ):
            seconds = await best(rounds, once, size)
            print(f"{mib:7.3f} MiB  {label:48s} {seconds * 1000:8.1f} ms")
    await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.125,1,25")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nats-port", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "js", port=args.nats_port).start()
        try:
            uvloop.run(run(server.url, [float(s) for s in args.sizes.split(",")], args.rounds))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
