"""CPU per provider call of the executor's rate limits (`LimitGuard`), in this process.

    .venv/bin/python bench/limits_bench.py [--n 20000]

Starts its own nats-server (JetStream) in a temporary folder. Measures a call through `LimitGuard` under
two keys (provider, model) to a provider that answers at once, as a request and as a stream:

- far from the limits, in-process buckets (`LocalRateLimits`) and shared ones (`KVRateLimits`, admitted
  from local leases);
- near a shared limit (max_tokens 50,000 against 800,000 tpm: every lease is one call, taken and settled
  by compare-and-set), for a call that used all it took (nothing to settle) and one that used 1,020 tokens
  (its unused part goes back to the bucket); also the bucket's writes per call.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nats

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from switchyard.common.events import ChatMessage, Usage
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.providers.testing import ScriptedProvider
from switchyard.executor.resilience.limits import Limit, LimitGuard, LocalRateLimits, RateLimits
from switchyard.executor.resilience.shared import KVRateLimits

PROMPT = (ChatMessage(role="user", content="x" * 4000),)  # ~1,000 tokens as estimated


def minutely() -> Callable[[], float]:
    """A clock a minute later at every reading: the bucket is full again for every call."""
    minutes = itertools.count()
    return lambda: next(minutes) * 60.0


def answer(completion: int) -> Reply:
    return Reply("ok", "stop", "m", usage=Usage(prompt_tokens=1000, completion_tokens=completion))


async def per_call(guard: LimitGuard, call: ProviderCall, n: int, *, stream: bool) -> float:
    """CPU microseconds per call (this process only)."""
    started = time.process_time()
    for i in range(n):
        if stream:
            async for _ in guard.stream(call):
                pass
        else:
            await guard.request(call)
        if i % 50 == 0:
            await asyncio.sleep(0)  # lets background lease refills run, as between tasks
    return (time.process_time() - started) / n * 1e6


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = NatsServer(Path(folder) / "jetstream").start()
        try:
            nc = await nats.connect(server.url)
            bucket = await kv.bucket(nc.jetstream(), subjects.KV_RATE_LIMITS)
            huge = {"p": Limit(rpm=10**9, tpm=10**12), "p/m": Limit(rpm=10**9, tpm=10**12)}
            call = ProviderCall(model="m", messages=PROMPT, max_tokens=500)
            for name in ("local", "kv"):
                limits: RateLimits = LocalRateLimits(huge) if name == "local" else KVRateLimits(bucket, huge)
                if isinstance(limits, KVRateLimits):
                    await limits.start()
                guard = LimitGuard(ScriptedProvider(answer(20)), limits, keys=("p", "p/m"))
                await per_call(guard, call, 200, stream=False)  # warm
                for stream in (False, True):
                    us = await per_call(guard, call, n, stream=stream)
                    print(f"far, {name:5} {'stream ' if stream else 'request'} {us:7.1f} us CPU/call")
                if isinstance(limits, KVRateLimits):
                    await limits.close()
            near = ProviderCall(model="m", messages=PROMPT, max_tokens=50_000)
            for label, completion in (("used all it took", 50_000), ("used 1,020", 20)):
                key = f"near-{completion}"
                shared = KVRateLimits(bucket, {key: Limit(tpm=800_000)}, clock=minutely())
                guard = LimitGuard(ScriptedProvider(answer(completion)), shared, keys=(key,))
                await guard.request(near)
                _, before = await kv.read(bucket, kv.safe_key(key))
                us = await per_call(guard, near, n // 10, stream=False)
                _, after = await kv.read(bucket, kv.safe_key(key))
                writes = ((after or 0) - (before or 0)) / (n // 10)
                print(
                    f"near, kv    request {us:7.1f} us CPU/call, {label}: ~{writes:.1f} bucket writes a call"
                )
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().n))
