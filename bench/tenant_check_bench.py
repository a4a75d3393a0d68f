"""What the pipeline's tenant check costs a task (classifier and executor: common/tenants.py), on a real
nats-server: a registered tenant (the hot path: the registry's in-process view, followed by a watch), an
unknown one once the registry is kept (one KV read before it is refused), and any tenant while nobody
keeps a registry.

    .venv/bin/python bench/tenant_check_bench.py [--tenants 10000] [--checks 200000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nats
import uvloop

from switchyard.cli.processes import NatsServer
from switchyard.common import tenants


async def timed(check: tenants.TenantCheck, ids: list[str], n: int) -> tuple[float, str | None]:
    """Microseconds per check of `n` checks over `ids`, and the last answer."""
    answer: str | None = None
    started = time.perf_counter()
    for i in range(n):
        answer = await check.refusal(ids[i % len(ids)])
    return (time.perf_counter() - started) / n * 1e6, answer


async def run(url: str, count: int, checks: int) -> None:
    nc = await nats.connect(url)
    bucket = await tenants.registry_bucket(nc.jetstream())
    known = [f"org-{i:06d}" for i in range(count)]
    unknown = [f"typo-{i:06d}" for i in range(1000)]
    check = tenants.TenantCheck(lambda: bucket)
    await check.start()
    not_kept, answer = await timed(check, unknown, checks)
    assert answer is None
    print(f"registry not kept (auto): {not_kept:.2f} us per task (no round trip)")
    for tenant in known:
        await bucket.put(tenants.key_of(tenant), tenants.Entry(tenant, "active").dumps())
    await tenants.mark_kept(bucket, by="bench")
    started = time.perf_counter()
    seen = await tenants.glimpse(bucket)
    print(f"the gateway's sync reads {len(seen)} tenants in {(time.perf_counter() - started) * 1000:.0f} ms")
    await check.stop()
    check = tenants.TenantCheck(lambda: bucket)
    started = time.perf_counter()
    await check.start()
    print(f"start with {count} tenants: {(time.perf_counter() - started) * 1000:.0f} ms")
    hot, answer = await timed(check, known, checks)
    assert answer is None
    print(f"registered tenant (hot path): {hot:.2f} us per task over {checks} checks")
    miss, answer = await timed(check, unknown, 2000)
    assert answer is not None
    print(f"unknown tenant (refused after one KV read): {miss:.0f} us per task")
    await check.stop()
    await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = NatsServer(Path(d) / "js").start()
        try:
            uvloop.run(run(server.url, args.tenants, args.checks))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
