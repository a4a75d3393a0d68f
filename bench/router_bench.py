"""Router decision speed, in process: counting prompt tokens (cl100k) and deciding, per task.

    .venv/bin/python bench/router_bench.py [--n 2000]

Prompts come from the training pool (real lengths) with synthetic classifications that exercise every
strategy; live health signals are present for every model. Prints p50/p90/p99 of count+decide, and of
decide alone.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from switchyard.common.events import ChatMessage, ChatRequest, Classification
from switchyard.common.policy import load_policy
from switchyard.common.tokens import count_prompt, encoding
from switchyard.router.health import ModelSignal
from switchyard.router.routing import decide

POOL = Path("/work/shared/data/classifier/train_pool.jsonl")
TYPES = ["qa", "coding", "math", "writing", "extraction", "coordination", "chitchat"]


def prompts(n: int) -> list[str]:
    if not POOL.exists():
        return [f"Explain topic number {i} in detail. " * (1 + i % 20) for i in range(n)]
    lines = POOL.read_text(encoding="utf-8").split("\n")
    rng = random.Random(7)
    return [json.loads(line)["prompt"] for line in rng.sample([x for x in lines if x.strip()], n)]


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(int(len(values) * q), len(values) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    policy = load_policy()
    encoding()
    rng = random.Random(11)
    health = {
        m.id: ModelSignal(success=rng.uniform(0.5, 1), samples=50, latency_ms=300.0) for m in policy.models
    }
    available = {m.provider for m in policy.models}
    total, only = [], []
    for text in prompts(args.n):
        request = ChatRequest(messages=[ChatMessage(role="user", content=text)])
        cls = Classification(
            type=rng.choice(TYPES),  # type: ignore[arg-type]
            confidence=rng.random(),
            complexity=rng.random(),
            urgency=rng.random(),
            model_version="bench",
            latency_ms=0,
        )
        t0 = time.perf_counter()
        tokens = count_prompt(request)
        t1 = time.perf_counter()
        decide(
            request=request,
            classification=cls,
            policy=policy,
            available=available,
            prompt_tokens=tokens,
            headroom_usd=rng.choice([None, 100.0, 0.5]),
            health=health,
        )
        t2 = time.perf_counter()
        total.append((t2 - t0) * 1000)
        only.append((t2 - t1) * 1000)
    for name, values in (("count + decide", total), ("decide", only)):
        print(
            f"{name}: p50 {pct(values, 0.5):.3f} ms, p90 {pct(values, 0.9):.3f} ms, "
            f"p99 {pct(values, 0.99):.3f} ms, mean {statistics.mean(values):.3f} ms (n={len(values)})"
        )


if __name__ == "__main__":
    main()
