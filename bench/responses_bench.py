"""Stored responses: what a conversation chain costs in storage and time, on a real nats-server.

    .venv/bin/python bench/responses_bench.py [--turns 100] [--chains 3]

Builds `--chains` conversations of `--turns` turns each through the gateway's own code
(`stored_responses.chain.load` for a request naming the previous response, then `Conversation.remember`
of its answer), as `POST /v1/responses` with `previous_response_id` runs them, without HTTP or a model: the
user turns are prompts of the classifier's public training pool, in order, and each answer is the next
pool prompt (real text of real length, median ~250 characters; a model's answers are usually longer, so
scale the bytes). Prints, at a few turn counts, the record's size (JSON and zlib-compressed, as stored),
the time to read and resolve the previous response (`load`) and to store the answer (`remember`), medians
over the chains, and the bytes the bucket holds for a whole chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
import orjson

from switchyard.cli.processes import NatsServer
from switchyard.common.events import ChatRequest, TaskCompleted, TaskSubmitted, Usage
from switchyard.common.ids import new_id
from switchyard.gateway.responses_render import response_body
from switchyard.gateway.stored_responses.chain import load
from switchyard.gateway.stored_responses.store import StoredResponse, responses_bucket

POOL = Path("/work/shared/data/classifier/train_pool.jsonl")
REPORT_AT = (1, 10, 25, 50, 100, 200)


def prompts(path: Path) -> list[str]:
    with path.open() as f:
        return [json.loads(line)["prompt"] for line in f]


async def chain(
    store, texts: list[str], turns: int, rows: dict[int, list[tuple[int, int, float, float]]]
) -> int:
    previous: str | None = None
    for turn in range(1, turns + 1):
        body: dict[str, object] = {"model": "auto", "input": texts[2 * turn]}
        if previous is not None:
            body["previous_response_id"] = previous
        raw = orjson.dumps(body)
        started = time.perf_counter()
        talk = await load(store, "tenant-bench", raw)
        loaded = time.perf_counter() - started
        task = TaskSubmitted(
            task_id=new_id(),
            tenant_id="tenant-bench",
            request=ChatRequest.model_validate(
                {"model": "auto", "messages": [{"role": "user", "content": "x"}]}
            ),
            submitted_at=datetime.now(UTC),
        )
        done = TaskCompleted(
            task_id=task.task_id,
            tenant_id="tenant-bench",
            model="local/bench",
            provider="local",
            tier="local",
            content=texts[2 * turn + 1],
            finish_reason="stop",
            usage=Usage(prompt_tokens=1, completion_tokens=1),
            attempts=1,
            latency_ms=1.0,
            completed_at=datetime.now(UTC),
        )
        answer = response_body(task, done, created=talk.created, fields=talk.fields())
        started = time.perf_counter()
        assert await talk.remember(task, answer), f"turn {turn} not stored"
        kept = time.perf_counter() - started
        record = StoredResponse(response={**answer, "store": True}, input=[*talk.context, *talk.own])
        if turn in REPORT_AT:
            plain = len(orjson.dumps({"response": record.response, "input": record.input}))
            rows.setdefault(turn, []).append((plain, len(record.to_bytes()), loaded, kept))
        previous = str(answer["id"])
    return turns


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--chains", type=int, default=3)
    args = parser.parse_args()
    texts = prompts(POOL)
    with tempfile.TemporaryDirectory(prefix="sy-responses-bench-") as tmp:
        server = NatsServer(Path(tmp) / "jetstream").start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            store = await responses_bucket(
                js, keep_s=3600, max_bytes=2 * 1024**3, replicas=1, max_value_bytes=nc.max_payload - 4096
            )
            rows: dict[int, list[tuple[int, int, float, float]]] = {}
            for n in range(args.chains):
                await chain(store, texts[n * 2 * (args.turns + 1) :], args.turns, rows)
            held = (await js.stream_info("KV_switchyard-responses")).state.bytes
            await nc.close()
        finally:
            server.stop()
    print(f"stored responses, {args.chains} chains of {args.turns} turns (pool prompts as turns and answers)")
    print("| turn | record JSON KiB | stored (zlib) KiB | load ms (read + resolve) | remember ms (store) |")
    print("|---:|---:|---:|---:|---:|")
    for turn, got in sorted(rows.items()):
        plain, packed, loaded, kept = (statistics.median(x[i] for x in got) for i in range(4))
        print(
            f"| {turn} | {plain / 1024:.1f} | {packed / 1024:.1f} | {loaded * 1e3:.2f} | {kept * 1e3:.2f} |"
        )
    print(
        f"bucket bytes for all chains: {held / 2**20:.1f} MiB ({held / args.chains / 2**20:.1f} MiB a chain)"
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
