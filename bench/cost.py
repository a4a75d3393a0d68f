"""Where Switchyard's CPU goes: CPU-ms per request by process, and (with --profile) the hottest functions.

Starts the mock upstream and `switchyard up`, drives JSON requests with wrk at one concurrency for a
bounded time, and reads each process's user+system CPU from /proc before and after. With `--profile`,
py-spy samples every Python service during the run (py-spy from $PY_SPY, .venv or PATH) and the
top functions by inclusive samples are printed per service.

    .venv/bin/python bench/cost.py --seconds 10 --concurrency 4 [--profile] [--prompts pool] [--env K=V]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import cpu_seconds, run_wrk, tree_pids, wait_drained
from run import PROMPT, _body, add_env_option, env_settings, prompt_set
from systems import ROOT, start_switchyard, start_upstream

NAMES = ("gateway", "classifier", "router", "executor", "billing", "audit", "nats-server")


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    for name in NAMES:
        if name in cmd:
            return name
    return "switchyard up" if "switchyard" in cmd else cmd[:40]


def _py_spy() -> str:
    """py-spy from $PY_SPY, the project's venv, or PATH (it need not be a project dependency)."""
    found = os.environ.get("PY_SPY") or (ROOT / ".venv/bin/py-spy")
    if Path(found).exists():
        return str(found)
    return shutil.which("py-spy") or sys.exit("py-spy not found: set PY_SPY or install it")


def _frame(f: str) -> str:
    return f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0]


def _top(raw: Path, n: int, *, own: bool = False) -> list[tuple[str, float]]:
    """Share of samples per function: inclusive (counted once per stack) or, with `own`, where it ran."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        for frame in {_frame(frames[-1])} if own else {_frame(f) for f in frames}:
            counts[frame] += k
    return [(f, 100 * c / total) for f, c in counts.most_common(n)] if total else []


def hops(db: Path) -> list[tuple[str, float]]:
    """Median gap (ms) between a task's consecutive events, from the ledger's `occurred_at` (envelope time:
    when each service published), over every task in the run."""
    import sqlite3
    from datetime import datetime

    rows = sqlite3.connect(db).execute(
        "SELECT resource, action, occurred_at FROM ledger_entries WHERE resource LIKE 'task/%' ORDER BY seq"
    )
    tasks: dict[str, list[tuple[str, datetime]]] = collections.defaultdict(list)
    for resource, action, at in rows:
        tasks[resource].append((action, datetime.fromisoformat(at)))
    gaps: dict[str, list[float]] = collections.defaultdict(list)
    for events in tasks.values():
        events.sort(key=lambda e: e[1])
        for (a, ta), (b, tb) in itertools.pairwise(events):
            gaps[f"{a} -> {b}"].append((tb - ta).total_seconds() * 1000)
    return [(k, statistics.median(v)) for k, v in gaps.items() if len(v) >= 5]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true", help="sample each service with py-spy")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--prompts", choices=("one", "pool", "long"), default="one", help="as in bench/run.py"
    )
    add_env_option(parser)
    args = parser.parse_args()
    extra_env = env_settings(parser, args.env)

    upstream = start_upstream(latency_ms=args.latency_ms, chunks=8, chunk_gap_ms=2.0)
    sy = None
    try:
        sy = start_switchyard(upstream, extra_env)
        url = f"{sy.base_url}/chat/completions"
        prompts = prompt_set(args.prompts) or [PROMPT]
        body = [_body(sy.model, False, p) for p in prompts]
        run_wrk(url, body, sy.key, connections=1, seconds=3)  # warm-up
        pids = [p for p in tree_pids(sy.pid) if p != sy.pid]
        before = {p: cpu_seconds([p]) for p in pids}
        spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        if args.profile:
            out = Path(tempfile.mkdtemp(prefix="sy-cost-"))
            for p in pids:
                name = _name(p)
                if name in NAMES[:-1]:
                    raw = out / f"{name}-{p}.txt"
                    cmd = [_py_spy(), "record", "-r", "200", "-f", "raw", "-o", str(raw)]
                    cmd += ["-d", str(args.seconds), "-p", str(p), "--nonblocking"]
                    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    spies.append((name, raw, spy))
        result = run_wrk(url, body, sy.key, connections=args.concurrency, seconds=args.seconds)
        drain_s = wait_drained(sy.monitor_port)  # deferred work counts too
        by_name: collections.Counter[str] = collections.Counter()
        for p in pids:
            by_name[_name(p)] += cpu_seconds([p]) - before[p]
        for _, _, spy in spies:
            spy.wait(timeout=60)
        n = result.requests or 1
        print(
            f"{result.requests} requests, {result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p90 {result.p90_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"errors {result.errors}, concurrency {args.concurrency}, consumers drained {drain_s:.1f} s after"
        )
        print("CPU-ms per request by process:")
        for name, cpu in by_name.most_common():
            print(f"  {name:<16}{cpu * 1000 / n:8.2f}")
        print(f"  {'total':<16}{sum(by_name.values()) * 1000 / n:8.2f}")
        print("median gap between a task's events (ms, envelope times):")
        for hop, ms in hops(sy.workdir / "var" / "switchyard.db"):  # type: ignore[operator]
            print(f"  {hop:<36}{ms:8.2f}")
        for name, raw, _ in spies:
            if raw.exists():
                print(f"\n== {name} (inclusive % of samples)")
                for frame, pct in _top(raw, args.top):
                    print(f"  {pct:5.1f}  {frame}")
                print(f"-- {name} (own % of samples)")
                for frame, pct in _top(raw, args.top, own=True):
                    print(f"  {pct:5.1f}  {frame}")
    finally:
        if sy is not None:
            sy.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
