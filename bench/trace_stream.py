"""Where a streamed request's time to first token goes, hop by hop, at concurrency 1.

Starts `switchyard up` (metrics off) against a mock upstream that runs inside this process, sends
sequential streamed requests over raw sockets (as `bench/run.py` does) for a bounded time, and watches
the bus with a plain NATS subscriber. Every timestamp is this process's clock, taken on one event loop:

    client sent -> task submitted (seen on the bus) -> classified -> routed -> the upstream got the call
    -> the upstream wrote its first text -> the first text chunk on the bus -> the client read it

and prints each gap's median (and p90) in milliseconds, the CPU each process spent per streamed
request, and `TTFT+` as `make bench` reports it (against the upstream alone, measured afterwards). At
c=1 the loop is mostly idle between those moments, so each time is close to when the thing happened
(within a millisecond: the client, the bus observer and the upstream share the loop).

    .venv/bin/python bench/trace_stream.py [--seconds 15] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import statistics
import sys
import time
from pathlib import Path

import nats

from switchyard.cli.nats_users import url_with_credentials

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import _name
from measure import cpu_seconds, tree_pids
from run import _body
from systems import System, _free_port, start_switchyard
from upstream import Upstream

STAGES = (
    ("client sent", "submitted"),
    ("submitted", "classified"),
    ("classified", "routed"),
    ("routed", "upstream got the call"),
    ("upstream got the call", "upstream sent text"),
    ("upstream sent text", "first chunk on the bus"),
    ("first chunk on the bus", "client read text"),
)
_TEXT = re.compile(rb'"content":\s*"[^"]')


class TimedUpstream(Upstream):
    """The benchmark's mock upstream, noting when each call arrives and when its first text leaves."""

    def __init__(self, *args: float) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.marks: dict[str, float] = {}
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        real_readuntil = reader.readuntil

        async def readuntil(separator: bytes = b"\n") -> bytes:
            head = await real_readuntil(separator)
            if b"/chat/completions" in head:
                self.marks.setdefault("upstream got the call", time.perf_counter())
            return head

        real_write = writer.write

        def write(data: bytes) -> None:
            real_write(data)
            if b'"content": "' in data and b'"content": ""' not in data:
                self.marks.setdefault("upstream sent text", time.perf_counter())

        reader.readuntil = readuntil  # type: ignore[method-assign]
        writer.write = write  # type: ignore[method-assign]
        await super().handle(reader, writer)


async def one(host: str, port: int, path: str, body: bytes, key: str, marks: dict[str, float]) -> bool:
    reader, writer = await asyncio.open_connection(host, port)
    marks["client sent"] = time.perf_counter()
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    buf = b""
    try:
        while data := await reader.read(65536):
            buf += data
            if "client read text" not in marks and _TEXT.search(buf):
                marks["client read text"] = time.perf_counter()
            if b"data: [DONE]" in buf:
                return buf.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return False


async def trace(sy: System, upstream: TimedUpstream, nats_url: str, seconds: float) -> list[dict[str, float]]:
    nc = await nats.connect(nats_url)
    marks: dict[str, float] = {}
    names = {"task.submitted": "submitted", "task.classified": "classified", "task.routed": "routed"}

    async def seen(msg: nats.aio.msg.Msg) -> None:
        now = time.perf_counter()
        rest = msg.subject.removeprefix("switchyard.")
        if rest in names:
            marks.setdefault(names[rest], now)
        elif rest.startswith("chunk.") and b'"delta"' in msg.data:
            marks.setdefault("first chunk on the bus", now)

    await nc.subscribe("switchyard.task.*", cb=seen)
    await nc.subscribe("switchyard.chunk.>", cb=seen)
    await nc.flush()
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", f"{sy.base_url}/chat/completions")
    assert m
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    body = _body(sy.model, True).encode()
    out: list[dict[str, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        marks.clear()
        upstream.marks = marks
        if await one(host, port, path, body, sy.key, marks):
            await asyncio.sleep(0.005)  # let the bus observer's callbacks run
            out.append(dict(marks))
    await nc.close()
    return out


async def direct(upstream: TimedUpstream, base_url: str, seconds: float) -> list[float]:
    """Time to first text calling the upstream itself, with the same client: what `TTFT+` is over."""
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", f"{base_url}/chat/completions")
    assert m
    body = _body("bench-model", True).encode()
    out: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        marks: dict[str, float] = {}
        upstream.marks = {}
        if await one(m.group(1), int(m.group(2)), m.group(3), body, "sk-bench", marks):
            out.append((marks["client read text"] - marks["client sent"]) * 1000)
    return out


async def serve_and_trace(args: argparse.Namespace) -> tuple[list[dict[str, float]], list[float]]:
    upstream = TimedUpstream(args.latency_ms / 1000, 8, 0.002)
    port = _free_port()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port)
    fake = System("upstream (in process)", f"http://127.0.0.1:{port}/v1", "sk-bench", "bench-model")
    sy = await asyncio.to_thread(start_switchyard, fake)
    try:
        nats_port = re.search(r"nats://127\.0\.0\.1:(\d+)", (sy.workdir / "up.log").read_text())  # type: ignore[operator]
        assert nats_port, "no NATS url in the runner's output"
        url = url_with_credentials(f"nats://127.0.0.1:{nats_port.group(1)}", sy.workdir / "var")  # type: ignore[operator]
        await trace(sy, upstream, url, 3)  # warm-up
        connections = upstream.connections
        pids = [p for p in tree_pids(sy.pid) if p != sy.pid]
        before = {p: cpu_seconds([p]) for p in pids}
        runs = await trace(sy, upstream, url, args.seconds)
        by_name: collections.Counter[str] = collections.Counter()
        for p in pids:
            by_name[_name(p)] += cpu_seconds([p]) - before[p]
        print(f"upstream connections opened during the run: {upstream.connections - connections}")
        print("CPU-ms per streamed request by process:")
        for name, cpu in by_name.most_common():
            print(f"  {name:<16}{cpu * 1000 / max(len(runs), 1):8.2f}")
        print(f"  {'total':<16}{sum(by_name.values()) * 1000 / max(len(runs), 1):8.2f}")
    finally:
        await asyncio.to_thread(sy.stop)
    try:
        direct_ttft = await direct(upstream, fake.base_url, args.direct_seconds)
    finally:
        server.close()
    return runs, direct_ttft


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--direct-seconds", type=float, default=3.0, help="the upstream alone, afterwards")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    runs, direct_ttft = asyncio.run(serve_and_trace(args))
    gaps: dict[str, list[float]] = collections.defaultdict(list)
    for marks in runs:
        for a, b in (
            *STAGES,
            ("client sent", "client read text"),
            ("upstream got the call", "client read text"),
        ):
            if a in marks and b in marks:
                gaps[f"{a} -> {b}"].append((marks[b] - marks[a]) * 1000)
    complete = sum(all(s in m for pair in STAGES for s in pair) for m in runs)
    print(f"{len(runs)} streamed requests ({complete} with every mark), {args.seconds:g} s, concurrency 1")
    print(f"\n{'gap':<58}{'p50 ms':>9}{'p90 ms':>9}")
    for name, values in gaps.items():
        print(f"{name:<58}{statistics.median(values):9.2f}{_pct(values, 0.9):9.2f}")
    if direct_ttft and gaps["client sent -> client read text"]:
        own = statistics.median(direct_ttft)
        added = statistics.median(gaps["client sent -> client read text"]) - own
        print(f"\nupstream alone: time to first text p50 {own:.2f} ms ({len(direct_ttft)} requests)")
        print(f"TTFT+ (Switchyard's p50 less the upstream's, as `make bench` reports it): {added:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
