"""Where one request's time goes, stage by stage, at concurrency 1 (or a few).

Starts the mock upstream and `switchyard up` (metrics on), sends sequential JSON requests for a bounded
time, and prints, per stage, the median (and p90) in milliseconds:
- the client's view (whole request) and the gateway's `server-timing` stages (prep, admit, pipeline,
  settle) with `x-switchyard-overhead-ms`;
- per bus consumer, the mean wait (stored on the stream -> handler starts) and work (handler start ->
  settled), from `switchyard_consume_wait_seconds` / `switchyard_handle_seconds` on each service;
- the gaps between a task's events in the ledger (when each service published).

    .venv/bin/python bench/trace.py [--seconds 20] [--concurrency 1] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import hops
from run import _body
from systems import start_switchyard, start_upstream

SERVICES = ("audit", "billing", "executor", "router", "classifier")  # devstack's order: base port + index
_SERIES = re.compile(
    r'^(switchyard_(?:consume_wait|handle)_seconds)_(sum|count)\{consumer="([^"]+)"\} (\S+)$'
)


def _free_base(n: int) -> int:
    for base in range(19100, 29000, 10):
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free metrics ports")


def scrape(base: int) -> dict[tuple[str, str, str], float]:
    """{(series, consumer, sum|count): value} over every service's /metrics."""
    out: dict[tuple[str, str, str], float] = {}
    for i, _ in enumerate(SERVICES):
        try:
            text = httpx.get(f"http://127.0.0.1:{base + i}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            m = _SERIES.match(line)
            if m:
                out[(m.group(1), m.group(3), m.group(2))] = float(m.group(4))
    return out


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


async def drive(url: str, key: str, body: str, *, seconds: float, concurrency: int) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    deadline = time.monotonic() + seconds
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    async def one(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers=headers)
            r.extensions["client_ms"] = (time.perf_counter() - t0) * 1000
            responses.append(r)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(concurrency)))
    return responses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()

    base = _free_base(len(SERVICES) + 1)
    upstream = start_upstream(latency_ms=args.latency_ms, chunks=8, chunk_gap_ms=2.0)
    sy = None
    try:
        sy = start_switchyard(upstream, {"SWITCHYARD_METRICS_BASE_PORT": str(base)})
        url, body = f"{sy.base_url}/chat/completions", _body(sy.model, False)
        asyncio.run(drive(url, sy.key, body, seconds=3, concurrency=args.concurrency))  # warm-up
        before = scrape(base)
        responses = asyncio.run(drive(url, sy.key, body, seconds=args.seconds, concurrency=args.concurrency))
        after = scrape(base)
        ok = [r for r in responses if r.status_code == 200]
        print(f"{len(responses)} requests ({len(ok)} ok), concurrency {args.concurrency}, {args.seconds:g} s")
        print(f"(stack logs: {sy.workdir}/up.log)")
        stages: dict[str, list[float]] = collections.defaultdict(list)
        for r in ok:
            stages["client (whole request)"].append(r.extensions["client_ms"])
            for part in r.headers.get("server-timing", "").split(","):
                name, _, dur = part.strip().partition(";dur=")
                if dur:
                    stages[f"gateway {name}"].append(float(dur))
            if (o := r.headers.get("x-switchyard-overhead-ms")) is not None:
                stages["x-switchyard-overhead-ms"].append(float(o))
        print(f"\n{'stage':<40}{'p50 ms':>9}{'p90 ms':>9}{'max ms':>9}")
        for name, values in stages.items():
            print(f"{name:<40}{statistics.median(values):9.2f}{_pct(values, 0.9):9.2f}{max(values):9.1f}")
        print(f"\n{'consumer (means)':<40}{'wait ms':>9}{'work ms':>9}{'events':>9}")
        consumers = sorted({c for (_, c, _) in after})
        for c in consumers:
            row = []
            for series in ("switchyard_consume_wait_seconds", "switchyard_handle_seconds"):
                n = after.get((series, c, "count"), 0) - before.get((series, c, "count"), 0)
                total = after.get((series, c, "sum"), 0) - before.get((series, c, "sum"), 0)
                row.append((total * 1000 / n if n else float("nan"), n))
            print(f"{c:<40}{row[0][0]:9.2f}{row[1][0]:9.2f}{row[1][1]:9.0f}")
        print("\nmedian gap between a task's events (ms, envelope times):")
        for hop, ms in hops(sy.workdir / "var" / "switchyard.db"):  # type: ignore[operator]
            print(f"  {hop:<38}{ms:8.2f}")
    finally:
        if sy is not None:
            sy.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
