"""Speed of the local embedding model (`local/all-minilm-l6-v2`) on requests of many inputs.

    .venv/bin/python bench/local_embeddings_bench.py [--sizes 1,16,128,512] [--seconds 8]
        [--concurrency 8] [--texts paragraphs|queries] [--batch-tokens 128] [--json out.json]

It drives the executor's adapter (`LocalEmbeddings`, the one `POST /v1/embeddings` reaches on `make run`)
in this process, on the real fp32 ONNX files: what is measured is the model's work per request (tokenising,
ONNX Runtime runs, the worker thread), not the gateway and the bus, which cost the same per request
whatever the model does (README "Embeddings": ~6.5 ms a single short text through the whole stack).

Inputs are README.md's paragraphs (technical prose, 20 to 256 word pieces, ~175 on average: RAG-chunk
lengths), or with `--texts queries` 5 to 20 of its words (search queries, labels), drawn with a fixed seed,
so every run and every branch embeds the same texts. `--batch-tokens 1` runs each text alone, as the
adapter did before it grouped texts. Each size: requests of that many inputs
one after another for at most `--seconds` (and at most 40 requests): inputs/s, p50/p99 latency, and the
process's CPU ms per input (robust on a busy shared machine, where wall time is not). Then `--concurrency`
callers each sending one short query at a time (5 to 20 words) for `--seconds`: requests/s and latency.
Nothing listens on the network. Prints the load average around each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from switchyard.executor.providers.base import EmbeddingCall
from switchyard.executor.providers.local import LocalEmbeddings, files_loader
from switchyard.executor.providers.local.embeddings import BATCH_TOKENS

ROOT = Path(__file__).resolve().parents[1]
MODEL = "local/all-minilm-l6-v2"


def paragraphs() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    chunks = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n\n")]
    return [c for c in chunks if len(c) >= 80 and not c.startswith(("```", "|"))]


def queries(n: int, rng: random.Random, words: list[str]) -> list[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 20))) for _ in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def sized(local: LocalEmbeddings, pool: list[str], size: int, seconds: float) -> dict[str, Any]:
    rng = random.Random(size)
    latencies: list[float] = []
    inputs = tokens = 0
    began, cpu0 = time.perf_counter(), cpu_s()
    while time.perf_counter() - began < seconds and len(latencies) < 40:
        texts = [rng.choice(pool) for _ in range(size)]
        started = time.perf_counter()
        reply = await local.embed(EmbeddingCall(model=MODEL, inputs=tuple(texts), timeout_s=600))
        latencies.append(time.perf_counter() - started)
        inputs += reply.count
        tokens += reply.usage.prompt_tokens
    wall, cpu = time.perf_counter() - began, cpu_s() - cpu0
    return {
        "inputs": size,
        "requests": len(latencies),
        "tokens_per_input": round(tokens / inputs, 1),
        "inputs_per_s": round(inputs / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "cpu_ms_per_input": round(cpu * 1000 / inputs, 2),
    }


async def concurrent(
    local: LocalEmbeddings, words: list[str], callers: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    cpu0 = cpu_s()

    async def caller(i: int) -> None:
        rng = random.Random(1000 + i)
        while time.perf_counter() < deadline:
            call = EmbeddingCall(model=MODEL, inputs=tuple(queries(1, rng, words)), timeout_s=60)
            started = time.perf_counter()
            await local.embed(call)
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    wall, cpu = time.perf_counter() - began, cpu_s() - cpu0
    return {
        "callers": callers,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "cpu_ms_per_request": round(cpu * 1000 / len(latencies), 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,16,128,512")
    parser.add_argument("--seconds", type=float, default=8.0, help="at most this long per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--texts", choices=("paragraphs", "queries"), default="paragraphs", help="queries: 5 to 20 words each"
    )
    parser.add_argument(
        "--batch-tokens", type=int, default=BATCH_TOKENS, help="padded tokens a run (1: each text alone)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pool = paragraphs()
    words = sorted({w for p in pool for w in p.split() if w.isalpha()})
    if args.texts == "queries":
        pool = queries(2000, random.Random(5), words)
    local = LocalEmbeddings(files_loader(None, build=True), batch_tokens=args.batch_tokens)
    results: dict[str, Any] = {
        "args": vars(args) | {"json": None},
        "sizes": [],
        "load_before": os.getloadavg()[0],
    }
    try:
        await local.embed(EmbeddingCall(model=MODEL, inputs=tuple(pool[:8]), timeout_s=120))  # loaded, warm
        for size in (int(s) for s in args.sizes.split(",")):
            row = await sized(local, pool, size, args.seconds)
            row["load"] = round(os.getloadavg()[0], 2)
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
        if args.concurrency:
            row = await concurrent(local, words, args.concurrency, args.seconds)
            row["load"] = round(os.getloadavg()[0], 2)
            results["concurrent"] = row
            print(json.dumps(row), flush=True)
    finally:
        await local.aclose()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
