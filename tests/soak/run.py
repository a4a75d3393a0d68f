"""Soak: the whole platform (`switchyard up`, fake OpenAI upstream, SIEM export to rsyslog) at a fixed rate of
chat completions for a fixed time. Prints latency per minute and the memory (RSS) of every service; fails
(exit 1) if the memory grew more than 5 % after the warm-up, latency drifted, or an invariant broke.

    make soak                                   # 10 minutes at 5 requests/s
    make soak SOAK_ARGS="--duration 120 --rate 3"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.chaos.load import LoadStats, check_invariants, paced, percentile, steady_load
from tests.chaos.scenarios import check_siem
from tests.chaos.stack import SERVICES, ChaosStack

PAGE = 4096


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")


async def chat_load(
    stack: ChaosStack, *, rate: float, stop: asyncio.Event, samples: list[tuple[float, float, int]]
) -> None:
    """`rate` chat completions a second (each waits for its answer); records (time, latency ms, status)."""
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=60.0) as client:

        async def one(n: int) -> None:
            body = {
                "model": "auto",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Soak request {n}: say hello."}],
            }
            started = time.perf_counter()
            try:
                status = (await client.post("/v1/chat/completions", json=body)).status_code
            except httpx.HTTPError:
                status = 0
            samples.append((time.monotonic(), (time.perf_counter() - started) * 1000, status))

        await paced(one, rate=rate, stop=stop)


async def soak(duration: float, rate: float, warmup: float, folder: Path) -> int:
    stack = ChaosStack(folder).start()
    print(f"stack up in {folder}; {duration:.0f} s at {rate:g} req/s (warm-up {warmup:.0f} s)", flush=True)
    samples: list[tuple[float, float, int]] = []
    memory: list[tuple[float, dict[str, float]]] = []
    stop = asyncio.Event()
    tasks = LoadStats()
    try:
        t0 = time.monotonic()
        load = asyncio.create_task(chat_load(stack, rate=rate, stop=stop, samples=samples))
        # A trickle of async tasks too, so the invariants cover the task API as well.
        trickle = asyncio.create_task(
            steady_load(stack.base_url, stack.api_key, rate=0.5, stop=stop, stats=tasks)
        )
        while time.monotonic() - t0 < duration:
            await asyncio.sleep(10)
            pids = {name: stack.service_pid(name) for name in SERVICES}
            memory.append(
                (time.monotonic() - t0, {n: rss_mb(p) if p else float("nan") for n, p in pids.items()})
            )
        stop.set()
        await asyncio.gather(load, trickle)
        outcome, problems = await check_invariants(stack.bus_url, stack.db_url, tasks.accepted, timeout=120)
        verify = stack.cli("ledger", "verify")
        if verify.returncode != 0:
            problems.append(f"ledger verify failed: {verify.stdout}{verify.stderr[-500:]}")
        siem, problem = await check_siem(stack, outcome.ledger_rows, settle_s=60.0)
        problems += [problem] if problem else []
    finally:
        stop.set()
        stack.stop()

    print("\nminute  requests  ok     p50 ms  p95 ms  p99 ms  max ms")
    per_minute: list[float] = []
    for minute in range(int(duration // 60) + 1):
        lo = t0 + minute * 60
        rows = [s for s in samples if lo <= s[0] < lo + 60]
        if not rows:
            continue
        lat = [s[1] for s in rows if s[2] == 200]
        ok = sum(1 for s in rows if s[2] == 200)
        if minute < duration // 60:  # full minutes only
            per_minute.append(percentile(lat, 50))
        print(
            f"{minute:>6}  {len(rows):>8}  {ok:>5}  {percentile(lat, 50):>6.1f}  {percentile(lat, 95):>6.1f}"
            f"  {percentile(lat, 99):>6.1f}  {max(lat) if lat else float('nan'):>6.1f}"
        )
    total_ok = sum(1 for s in samples if s[2] == 200)
    print(f"\nrequests {len(samples)}, 200 OK {total_ok} ({total_ok / max(1, len(samples)):.2%})")
    print("\nRSS MB   " + "  ".join(f"{n:>10}" for n in SERVICES) + "       total")
    for at, mem in memory:
        print(
            f"{at:>6.0f}s  "
            + "  ".join(f"{mem[n]:>10.1f}" for n in SERVICES)
            + f"  {sum(mem.values()):>10.1f}"
        )
    after = [(at, sum(m.values())) for at, m in memory if at >= warmup]
    growth = float("nan")
    if len(after) >= 2:
        first = sum(v for _, v in after[:3]) / len(after[:3])
        last = sum(v for _, v in after[-3:]) / len(after[-3:])
        growth = (last - first) / first
    print(f"\nmemory growth after warm-up: {growth:+.2%} (limit +5.00 %)")
    steady = per_minute[1:] if len(per_minute) > 2 else per_minute
    drift = (steady[-1] - steady[0]) / steady[0] if len(steady) >= 2 and steady[0] else 0.0
    print(f"p50 latency first vs last full minute after warm-up: {drift:+.1%}")
    print(f"task API: {tasks.summary()}; completed {outcome.completed}; failed {dict(outcome.failed)}")
    print(f"ledger entries {len(outcome.ledger_rows)}; SIEM {siem}; problems: {problems or 'none'}")
    failed = bool(problems) or not growth <= 0.05 or total_ok < 0.99 * len(samples) or drift > 0.5
    print("SOAK FAILED" if failed else "SOAK PASSED")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=5.0, help="chat completions per second (default 5)")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before memory is compared")
    parser.add_argument("--folder", type=Path, default=None, help="where the run keeps its data and logs")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="switchyard-soak-"))
    sys.exit(asyncio.run(soak(args.duration, args.rate, args.warmup, folder)))


if __name__ == "__main__":
    main()
