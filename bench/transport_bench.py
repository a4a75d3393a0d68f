"""The executor's provider client, in process: httpx's own transport (httpcore over anyio) against the
aiohttp transport the adapters use (`providers/transport.py`), both behind the same `httpx.AsyncClient`.

    .venv/bin/python bench/transport_bench.py [--calls 3000] [--concurrency 1,4,16,64] [--latency-ms 5]

Starts the mock upstream (`bench/upstream.py`), then per concurrency and transport (alternating, twice)
makes `--calls` JSON POSTs the way `HttpProvider` does (a built request, orjson body, the answer parsed)
with that many calls in flight, on uvloop as the services run. Prints calls/s and this process's CPU-ms
per call (user + system, from getrusage): the client's own cost, the upstream's is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

import httpx
import orjson
import uvloop
from systems import start_upstream

from switchyard.executor.providers.http import JSON_HEADERS, MAX_CONNECTIONS, make_client, request_timeout

BODY = orjson.dumps(
    {"model": "bench-model", "messages": [{"role": "user", "content": "What is the capital?"}]}
)


def _client(kind: str, base_url: str) -> httpx.AsyncClient:
    if kind == "aiohttp":
        return make_client(base_url=base_url)
    return httpx.AsyncClient(  # what make_client built before the aiohttp transport
        base_url=base_url.rstrip("/") + "/",
        timeout=request_timeout(None, 60.0),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        follow_redirects=False,
    )


async def _run(kind: str, base_url: str, calls: int, concurrency: int) -> tuple[float, float]:
    client = _client(kind, base_url)
    url = client.build_request("POST", "chat/completions").url
    headers = {**JSON_HEADERS, "Authorization": "Bearer sk-bench"}

    async def one() -> None:
        request = client.build_request(
            "POST", url, content=BODY, headers=headers, timeout=request_timeout(None, 60.0)
        )
        response = await client.send(request)
        assert response.status_code == 200, response.status_code
        orjson.loads(response.content)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    try:
        await asyncio.gather(*(worker(4) for _ in range(concurrency)))  # connections open, code warm
        per, extra = divmod(calls, concurrency)
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.gather(*(worker(per + (i < extra)) for i in range(concurrency)))
        took, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await client.aclose()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return calls / took, cpu * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()
    upstream = start_upstream(latency_ms=args.latency_ms, chunks=8, chunk_gap_ms=2.0)
    try:
        print(f"mock upstream at {args.latency_ms:g} ms, {args.calls} calls per run")
        print(f"{'in flight':>9}  {'transport':<8}  {'calls/s':>8}  {'CPU-ms/call':>11}")
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            for kind in ("httpcore", "aiohttp", "aiohttp", "httpcore"):
                rate, cpu = uvloop.run(_run(kind, upstream.base_url, args.calls, concurrency))
                print(f"{concurrency:>9}  {kind:<8}  {rate:>8.1f}  {cpu:>11.3f}")
    finally:
        upstream.proc.terminate()
        upstream.proc.wait(timeout=10)


if __name__ == "__main__":
    main()
