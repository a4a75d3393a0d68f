"""`make bench`: Switchyard against LiteLLM on the same mock upstream, same load, in the same run.

Each scenario (concurrency 1, 16, 64; JSON and streamed) runs every system in turn, in alternating order
over the rounds, so drift on this shared machine hits all of them. Printed as one table and written to
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import LoadResult, cpu_seconds, peak_rss_mb, run_stream, run_wrk, tree_pids, wait_drained
from systems import System, start_litellm, start_switchyard, start_upstream

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "What is the capital of France?"
# `--prompts pool`: real prompts of varied length (the classifier's training pool, public data), the same
# ones in the same order for every system.
POOL = Path("/work/shared/data/classifier/train_pool.jsonl")
POOL_PROMPTS = 256
POOL_MAX_CHARS = 4000
# `--prompts long`: 32 prompts of 16,000 characters (pool prompts joined).
LONG_PROMPTS = 32
LONG_CHARS = 16_000


def _body(model: str, stream: bool, prompt: str = PROMPT) -> str:
    req: dict[str, object] = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        req["stream"] = True
    return json.dumps(req)


def long_prompts(n: int = LONG_PROMPTS, chars: int = LONG_CHARS) -> list[str]:
    """`n` prompts of about `chars` characters, each the pool's prompts joined by blank lines: the size of
    a request that carries retrieved documents or a file to review, where per-character work shows."""
    rows, out = pool_prompts(n=n * chars // 100), []
    for i in range(n):
        parts, size = [], 0
        for row in rows[i::n]:
            if size >= chars:
                break
            parts.append(row)
            size += len(row) + 2
        out.append("\n\n".join(parts)[:chars])
    return out


def prompt_set(name: str) -> list[str] | None:
    """The prompts of `--prompts NAME` (None: the one prompt)."""
    if name == "pool":
        return pool_prompts()
    if name == "long":
        return long_prompts()
    return None


def pool_prompts(path: Path = POOL, n: int = POOL_PROMPTS) -> list[str]:
    """`n` prompts drawn (seeded) from the pool, at most POOL_MAX_CHARS each."""
    with path.open(encoding="utf-8") as f:  # by "\n" only: prompts hold other line separators
        rows = [json.loads(line)["prompt"] for line in f if line.strip()]
    fitting = [p for p in rows if 0 < len(p) <= POOL_MAX_CHARS]
    return random.Random(7).sample(fitting, min(n, len(fitting)))


def measure(
    system: System, *, stream: bool, concurrency: int, seconds: int, prompts: list[str] | None = None
) -> dict[str, float]:
    pids = tree_pids(system.pid)
    cpu_before = cpu_seconds(pids)
    url = f"{system.base_url}/chat/completions"
    body = [_body(system.model, stream, p) for p in prompts] if prompts else _body(system.model, stream)
    if stream:
        result: LoadResult = run_stream(url, body, system.key, concurrency=concurrency, seconds=seconds)
    else:
        result = run_wrk(url, body, system.key, connections=concurrency, seconds=seconds)
    drain_s = wait_drained(system.monitor_port)
    cpu = cpu_seconds(tree_pids(system.pid)) - cpu_before
    return {
        "requests": result.requests,
        "errors": result.errors,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "ttft_p50_ms": result.ttft_p50_ms if result.ttft_p50_ms is not None else float("nan"),
        "cpu_ms_per_request": cpu * 1000 / result.requests if result.requests else float("nan"),
        "drain_s": drain_s,  # how long its consumers took to finish after the load (CPU includes it)
    }


def self_timed_overhead(system: System, n: int = 20) -> float | None:
    """Median of the gateway's own `x-switchyard-overhead-ms` header, if it sends one."""
    values = []
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            r = client.post(
                f"{system.base_url}/chat/completions",
                content=_body(system.model, False),
                headers={"authorization": f"Bearer {system.key}", "content-type": "application/json"},
            )
            if "x-switchyard-overhead-ms" in r.headers:
                values.append(float(r.headers["x-switchyard-overhead-ms"]))
    return statistics.median(values) if values else None


def _merge(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    merged = {k: statistics.median([r[k] for r in runs]) for k in keys}
    merged["requests"] = sum(r["requests"] for r in runs)
    merged["errors"] = sum(r["errors"] for r in runs)
    return merged


def add_env_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for Switchyard (repeatable), e.g. SWITCHYARD_CLASSIFIER_MAX_TOKENS=64; recorded",
    )


def env_settings(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """The `--env` items as a mapping; an item without '=' is a usage error."""
    bad = [item for item in items if "=" not in item]
    if bad:
        parser.error(f"--env takes KEY=VALUE, got {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="per system, scenario and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the mock upstream's latency")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--litellm-workers",
        type=int,
        default=1,
        help="LiteLLM proxy processes (its default: 1; Switchyard's processes use every core)",
    )
    parser.add_argument(
        "--prompts",
        choices=("one", "pool", "long"),
        default="one",
        help=f"one: {PROMPT!r} every time; pool: {POOL_PROMPTS} real prompts of varied length, in turn; "
        f"long: {LONG_PROMPTS} prompts of {LONG_CHARS:,} characters (pool prompts joined), in turn",
    )
    add_env_option(parser)
    parser.add_argument("--out", help="results file name in bench/results (default latest[-pool].json)")
    args = parser.parse_args()
    extra_env = env_settings(parser, args.env)
    levels = [int(c) for c in args.concurrency.split(",")]
    prompts = prompt_set(args.prompts)

    upstream = start_upstream(latency_ms=args.latency_ms, chunks=8, chunk_gap_ms=2.0)
    systems: list[System] = [upstream]
    try:
        systems.append(start_switchyard(upstream, extra_env))
        if not args.skip_litellm:
            systems.append(start_litellm(upstream, workers=args.litellm_workers))
        for s in systems:  # warm up every path once (model loads, pools, JIT caches)
            measure(s, stream=False, concurrency=1, seconds=2)
            measure(s, stream=True, concurrency=1, seconds=2)
        table: dict[str, dict[str, dict[str, float]]] = {}
        for stream in (False, True):
            for c in levels:
                scenario = f"{'stream' if stream else 'json'} c={c}"
                runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
                for r in range(args.rounds):
                    order = systems if r % 2 == 0 else list(reversed(systems))
                    for s in order:
                        runs[s.name].append(
                            measure(s, stream=stream, concurrency=c, seconds=args.seconds, prompts=prompts)
                        )
                table[scenario] = {name: _merge(v) for name, v in runs.items()}
                print(f"  measured {scenario}", file=sys.stderr, flush=True)
        rss = {s.name: peak_rss_mb(tree_pids(s.pid)) for s in systems}
        overhead = self_timed_overhead(systems[1])
    finally:
        for s in reversed(systems):
            s.stop()
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "conditions": {
            "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, shared",
            "python": platform.python_version(),
            "upstream_latency_ms": args.latency_ms,
            "seconds_per_run": args.seconds,
            "rounds": args.rounds,
            "load": "wrk -t1 (JSON), asyncio raw sockets (SSE)",
            "prompts": _describe(prompts),
            "switchyard_settings": extra_env,
            "litellm_workers": args.litellm_workers,
            **{s.name: s.notes for s in systems if s.notes},
        },
        "scenarios": table,
        "peak_rss_mb": rss,
        "self_timed_overhead_ms_p50": overhead,
    }
    RESULTS.mkdir(exist_ok=True)
    name = args.out or ("latest.json" if prompts is None else f"latest-{args.prompts}.json")
    (RESULTS / name).write_text(json.dumps(report, indent=2, allow_nan=True))
    print_table(report)
    return 0


def _describe(prompts: list[str] | None) -> str:
    if not prompts:
        return f"one prompt, {len(PROMPT)} characters: {PROMPT!r}"
    lengths = sorted(len(p) for p in prompts)
    return (
        f"{len(prompts)} prompts from {POOL.name} in turn, characters: median {lengths[len(lengths) // 2]}, "
        f"max {lengths[-1]}"
    )


def print_table(report: dict[str, object]) -> None:
    scenarios: dict[str, dict[str, dict[str, float]]] = report["scenarios"]  # type: ignore[assignment]
    direct = "upstream (direct)"
    overhead = report["self_timed_overhead_ms_p50"]
    print(
        f"\n{'scenario':<14}{'system':<19}{'req/s':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'added p50':>11}"
        f"{'self p50':>10}{'TTFT+':>9}{'CPU-ms/req':>12}{'drain s':>9}{'errors':>8}"
    )
    for scenario, systems in scenarios.items():
        base = systems[direct]
        for name, m in systems.items():
            added = "" if name == direct else f"{m['p50_ms'] - base['p50_ms']:.1f}"
            own = f"{overhead:.1f}" if overhead and name == "switchyard" and scenario == "json c=1" else ""
            ttft = (
                ""
                if name == direct or "stream" not in scenario
                else f"{m['ttft_p50_ms'] - base['ttft_p50_ms']:.1f}"
            )
            print(
                f"{scenario:<14}{name:<19}{m['rps']:>8.1f}{m['p50_ms']:>9.1f}{m['p90_ms']:>9.1f}{m['p99_ms']:>9.1f}"
                f"{added:>11}{own:>10}{ttft:>9}{m['cpu_ms_per_request']:>12.2f}{m.get('drain_s', 0.0):>9.1f}"
                f"{int(m['errors']):>8}"
            )
    rss: dict[str, float] = report["peak_rss_mb"]  # type: ignore[assignment]
    print(
        "\npeak RSS (MB, summed over each system's processes): "
        + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
    )
    print(
        "self-timed overhead (x-switchyard-overhead-ms, p50 of 20 sequential JSON requests after the runs): "
        + (f"{overhead:.2f} ms" if overhead else "not reported")
    )
    conditions: dict[str, object] = report["conditions"]  # type: ignore[assignment]
    print(f"prompts: {conditions['prompts']}; LiteLLM workers: {conditions.get('litellm_workers', 1)}")
    print(
        "times in ms; 'added p50' and 'TTFT+' are measured from outside, against calling the upstream "
        "directly; 'self p50' is Switchyard's own header (gateway time less the executor's wait on the "
        "provider: excludes the client's socket and uvicorn's parsing, includes everything else); "
        "'drain s' is how long Switchyard's consumers (ledger, billing) took to finish after the load, and "
        "its CPU-ms/req includes that work"
    )


if __name__ == "__main__":
    sys.exit(main())
