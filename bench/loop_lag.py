"""How long a request body holds the gateway's event loop while it is taken in as `serving.serve` takes it,
up to its publishing: its parse (on a worker thread past `bounds.READ_INLINE_BYTES`), the input
guardrails and the task on the loop, its check against the bus's limit (`check_fits`, on a thread too),
the admission's estimate, and its publishing (`encode` of the task as checked). With `--before`: as it was
taken in before (everything on the loop, the task written three times: two checks and its publishing),
with only what the code had then (it runs against an older checkout's sources). A 1 ms ticker on the loop
records the longest gap between its ticks: what every other request of the replica waited at worst. Wall
time, the best of three runs (a loaded shared machine adds gaps of its own).

    .venv/bin/python bench/loop_lag.py [--cap ITEMS] [--only TEXT] [--before]

Prints one row per shape of parse_cost.py: face, shape, items, outcome and the longest stall in seconds."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parse_cost import Shape, shapes
from parse_faces import (
    GUARDS,
    PRINCIPAL,
    SETTINGS,
    anthropic,
    chat,
    embedded,
    embeddings_request,
    gemini,
    gemini_embed,
    legacy_completion,
    read_anthropic,
    read_chat,
    read_gemini,
    read_legacy,
    read_responses,
    responses,
)

from switchyard.common.envelope import encode, encoded_size
from switchyard.gateway import bounds, completions, serving
from switchyard.gateway.budgets import pricing
from switchyard.gateway.errors import APIError
from switchyard.gateway.gemini.request import parse_embeddings
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.tasks import TaskClient
from tests.support.loop_gaps import longest_gap

TICK_S = 0.001


def _embeddings(body: bytes) -> Any:
    return serving._openai_embeddings(body, SETTINGS)


def _gemini_embeddings(body: bytes) -> Any:
    return parse_embeddings(
        body, model="m", path_model="m", batch=True, max_prompt_chars=SETTINGS.max_prompt_chars
    )


async def _completion(parsed: ChatCompletionRequest, *, size: int) -> None:
    client = TaskClient(SimpleNamespace(max_payload=8 * 1024 * 1024), publisher=None)  # type: ignore[arg-type]
    GUARDS.run_input(list(parsed.messages))
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    await client.check_fits_off_loop(task, size=size)
    await asyncio.sleep(0)  # the admission's round trips
    pricing.prompt_tokens(task.request)
    await asyncio.sleep(0)
    client.check_fits(task)  # `TaskClient.run`'s own check: written already
    encode(task, source="bench", data=client._written.pop(id(task), None))  # type: ignore[call-arg]


async def _completion_before(parsed: ChatCompletionRequest, *, size: int) -> None:
    GUARDS.run_input(list(parsed.messages))
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    with bounds.collector_paused():  # `_admit`'s check_fits
        encoded_size(task, within=1)
    await asyncio.sleep(0)
    pricing.prompt_tokens(task.request)
    await asyncio.sleep(0)
    with bounds.collector_paused():  # `TaskClient.run`'s
        encoded_size(task, within=1)
    encode(task, source="bench")


async def _embedded(parsed: Any, *, size: int) -> None:
    embedded(parsed)


# each face's parse, and what follows it on the loop
READS: dict[Callable[[bytes], Any], tuple[Callable[[bytes], Any], Callable[..., Awaitable[None]]]] = {
    chat: (read_chat, _completion),
    responses: (read_responses, _completion),
    anthropic: (read_anthropic, _completion),
    gemini: (read_gemini, _completion),
    legacy_completion: (read_legacy, _completion),
    embeddings_request: (_embeddings, _embedded),
    gemini_embed: (_gemini_embeddings, _embedded),
}


async def _stall(shape: Shape, body: bytes, *, before: bool) -> tuple[str, float]:
    read, then = READS[shape.run]

    async def taken_in() -> str:
        try:
            if before:
                await (_completion_before if then is _completion else then)(read(body), size=len(body))
            else:
                parsed = await bounds.read_off_loop(functools.partial(read, body), size=len(body))
                await then(parsed, size=len(body))
        except APIError as exc:
            return f"{exc.status} {exc.code}"
        return "ok"

    outcome, longest, _ = await longest_gap(taken_in(), tick_s=TICK_S)
    return outcome, longest - TICK_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="")
    parser.add_argument("--before", action="store_true", help="everything on the loop, as before")
    parser.add_argument("--cap", type=int, default=None, help="at most this many conversation items")
    args = parser.parse_args()
    print("| face | shape | items | outcome | longest stall (s) |\n|---|---|---|---|---|")
    for shape in shapes():
        if args.only not in f"{shape.face} {shape.name}":
            continue
        body, items = shape.body(SETTINGS.max_body_bytes, args.cap)
        runs = [asyncio.run(_stall(shape, body, before=args.before)) for _ in range(3)]
        outcome = runs[0][0]
        print(
            f"| {shape.face} | {shape.name} | {items:,} | {outcome} | {min(r[1] for r in runs):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
