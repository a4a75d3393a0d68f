"""Scaling: throughput and CPU cost with 1, 2 and 4 executor and gateway replicas, and CPU cost by load.

For each replica count, starts the mock upstream and `switchyard up` with SWITCHYARD_EXECUTOR_REPLICAS and
SWITCHYARD_GATEWAY_REPLICAS set (gateways share the port with SO_REUSEPORT), warms up, then drives JSON
requests with wrk at each concurrency for a bounded time. Prints requests/s, p50/p99 and CPU-ms per
request (user+system over every process of the stack, nats-server included).

    .venv/bin/python bench/scaling.py [--replicas 1,2,4] [--concurrency 1,16,64] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import cpu_seconds, run_wrk, tree_pids, wait_drained
from run import RESULTS, _body
from systems import start_switchyard, start_upstream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    rows = []
    upstream = start_upstream(latency_ms=args.latency_ms, chunks=8, chunk_gap_ms=2.0)
    try:
        for n in [int(x) for x in args.replicas.split(",")]:
            env = {"SWITCHYARD_EXECUTOR_REPLICAS": str(n), "SWITCHYARD_GATEWAY_REPLICAS": str(n)}
            sy = start_switchyard(upstream, env)
            try:
                url, body = f"{sy.base_url}/chat/completions", _body(sy.model, False)
                run_wrk(url, body, sy.key, connections=4, seconds=3)  # warm-up: every replica's first calls
                for c in [int(x) for x in args.concurrency.split(",")]:
                    before = cpu_seconds(tree_pids(sy.pid))
                    r = run_wrk(url, body, sy.key, connections=c, seconds=args.seconds)
                    wait_drained(sy.monitor_port)  # the ledger's and billing's share of the load counts too
                    cpu = cpu_seconds(tree_pids(sy.pid)) - before
                    row = {
                        "replicas": n,
                        "concurrency": c,
                        "rps": round(r.rps, 1),
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "errors": r.errors,
                        "cpu_ms_per_request": round(cpu * 1000 / r.requests, 2) if r.requests else None,
                        "processes": len(tree_pids(sy.pid)),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                sy.stop()
    finally:
        upstream.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{'replicas':>8}{'conc':>6}{'req/s':>9}{'p50':>9}{'p99':>9}{'CPU-ms/req':>12}{'errors':>8}")
    for r in rows:
        print(
            f"{r['replicas']:>8}{r['concurrency']:>6}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['cpu_ms_per_request'] or float('nan'):>12.2f}{r['errors']:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
