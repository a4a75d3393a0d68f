"""A gateway's memory per request held in flight: N requests at once (N = 1, 10, 30 by default) whose
answers the pipeline holds back (as a slow model does: an agent's answer may take minutes), on the chat,
Anthropic and Responses faces, streamed and not, with a coding agent's bodies: `agent` (~1 MiB: a long
tool loop, many messages and tool results) and `shots` (~7.75 MiB, SWITCHYARD_MAX_BODY_BYTES as shipped:
the same loop with screenshots, base64 images).

One nats-server and SQLite; one gateway process per (face, body, stream), its cases in ascending N. When
all N tasks are on the bus (the stand-in pipeline, `Answerer(hold=True)`, has them), the gateway's RSS is
read (`held`: what the N requests keep while they wait), after `--settle` seconds (a collection, the
allocator's trims), then the answers are released. `peak` is VmHWM (reset through /proc/PID/clear_refs
before the case) above the gateway's idle RSS: the transient high-water mark of reading, parsing and
publishing the N bodies. `per_req` is (held - idle) / N. Linux only.

    .venv/bin/python bench/inflight_memory_bench.py [--faces chat,messages,responses] [--bodies agent,shots]
        [--streams 0,1] [--counts 1,10,30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_bench import UNLIMITED, reset_peak, rss_kib
from switchyard.cli.processes import NatsServer
from tests.integration.gateway.harness import Answerer, auth, gateways, make_org

MIB = 1024 * 1024
MAX_BODY = 8 * MIB - 256 * 1024  # SWITCHYARD_MAX_BODY_BYTES as shipped
SIZES = {"agent": 1 * MIB, "shots": MAX_BODY - 16 * 1024}
SHOT_BYTES = 900 * 1024  # one screenshot (PNG), before base64
ENV = {
    **UNLIMITED,
    "SWITCHYARD_MAX_BODY_BYTES": str(MAX_BODY),
    "SWITCHYARD_MAX_PROMPT_CHARS": "100000000",
    "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "1000",
    "SWITCHYARD_TASK_TIMEOUT_S": "600",
}
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}


def _text(n: int, seed: int) -> str:
    words = ("def", "return", "self", "value", "import", "class", "for", "in", "if", "else", "None", "x")
    out = [f"t{seed}"]
    size = 0
    i = seed
    while size < n:
        w = words[i % len(words)]
        out.append(w)
        size += len(w) + 1
        i = i * 7 + 3
    return " ".join(out)


def _shot(i: int) -> str:
    return base64.b64encode(os.urandom(SHOT_BYTES - 16) + i.to_bytes(16, "big")).decode()


def body_of(face: str, kind: str, stream: bool) -> bytes:
    """A coding agent's request of about SIZES[kind] bytes on `face`: a system prompt, tools, then turns of
    a user's text, an assistant's tool call and its result (and, for `shots`, screenshots in the tool
    loop's user turns) until the size is reached."""
    target = SIZES[kind]
    shots = kind == "shots"
    turns: list[Any] = []
    size = 40_000
    i = 0
    while size < target:
        shot = _shot(i) if shots and size + 1_400_000 < target else None
        result = _text(4000 if not shots else 2000, i)
        asked = _text(600, i + 1)
        turns.extend(_turn(face, i, asked, result, shot))
        size += len(result) + len(asked) + 300 + (len(shot) if shot else 0)
        i += 1
    tools = [
        {
            "name": f"tool_{n}",
            "description": _text(600, n),
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
        for n in range(30)
    ]
    system = _text(12_000, 99)
    body: dict[str, Any] = {"model": "auto", "max_tokens": 64, "stream": stream}
    if face == "chat":
        body["messages"] = [{"role": "system", "content": system}, *turns]
        body["tools"] = [{"type": "function", "function": t} for t in tools]
    elif face == "messages":
        body["system"] = system
        body["messages"] = turns
        body["tools"] = [
            {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
            for t in tools
        ]
    else:
        body["instructions"] = system
        body["input"] = turns
        body["tools"] = [{"type": "function", **t} for t in tools]
        body["max_output_tokens"] = body.pop("max_tokens")
        body["store"] = False
    return orjson.dumps(body)


def _turn(face: str, i: int, asked: str, result: str, shot: str | None) -> list[Any]:
    call, args = f"call_{i}", orjson.dumps({"path": f"src/f{i}.py"}).decode()
    if face == "chat":
        user: Any = asked
        if shot:
            user = [
                {"type": "text", "text": asked},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{shot}"}},
            ]
        return [
            {"role": "user", "content": user},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call, "type": "function", "function": {"name": "tool_1", "arguments": args}}
                ],
            },
            {"role": "tool", "tool_call_id": call, "content": result},
            {"role": "assistant", "content": "ok"},
        ]
    if face == "messages":
        blocks: list[Any] = [{"type": "text", "text": asked}]
        if shot:
            blocks.append(
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": shot}}
            )
        return [
            {"role": "user", "content": blocks},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call, "name": "tool_1", "input": {"path": f"f{i}"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call, "content": result}]},
            {"role": "assistant", "content": "ok"},
        ]
    parts: list[Any] = [{"type": "input_text", "text": asked}]
    if shot:
        parts.append({"type": "input_image", "image_url": f"data:image/png;base64,{shot}"})
    return [
        {"role": "user", "content": parts},
        {"type": "function_call", "call_id": call, "name": "tool_1", "arguments": args},
        {"type": "function_call_output", "call_id": call, "output": result},
        {"role": "assistant", "content": "ok"},
    ]


async def _all_held(pipeline: Answerer, sent: list[asyncio.Task[str]], timeout_s: float) -> int:
    """How many of the `sent` requests' tasks the pipeline holds, once it holds all of them, one request
    ended (refused) or `timeout_s` passed."""
    ends = time.monotonic() + timeout_s
    while len(pipeline.held) < len(sent) and not any(s.done() for s in sent) and time.monotonic() < ends:
        await asyncio.sleep(0.05)
    return len(pipeline.held)


async def run_cases(
    base: str,
    pid: int,
    db_url: str,
    url: str,
    face: str,
    kind: str,
    stream: bool,
    counts: list[int],
    settle: float,
) -> list[dict[str, Any]]:
    org = await make_org(db_url, f"inflight-{face}-{kind}-{time.monotonic_ns()}", roles=("member",))
    pipeline = await Answerer.start(url)
    headers = {
        **auth(org.keys["member"]),
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    body = body_of(face, kind, stream)
    rows = []
    limits = httpx.Limits(max_connections=200)
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600, limits=limits) as http:
            warm = await http.post(PATHS[face], content=_small(face))
            warm.raise_for_status()
            await asyncio.sleep(1.0)
            idle = rss_kib(pid)["VmRSS"]
            for n in counts:
                pipeline.seen.clear()
                pipeline.hold = True
                reset_peak(pid)
                before = rss_kib(pid)["VmRSS"]
                started = time.monotonic()
                sent = [asyncio.create_task(_one(http, PATHS[face], body, stream)) for _ in range(n)]
                on_bus = await _all_held(pipeline, sent, 120)
                submitted = time.monotonic() - started
                await asyncio.sleep(settle)
                held = rss_kib(pid)
                await pipeline.release()
                statuses = await asyncio.gather(*sent, return_exceptions=True)
                statuses = [s if isinstance(s, str) else type(s).__name__ for s in statuses]
                rows.append(
                    {
                        "face": face,
                        "body": kind,
                        "body_mib": len(body) / MIB,
                        "stream": stream,
                        "n": n,
                        "status": ",".join(sorted(set(statuses)))
                        + ("" if on_bus == n else f" ({on_bus} on the bus)"),
                        "submit_s": submitted,
                        "idle_mib": idle / 1024,
                        "held_above_idle_mib": (held["VmRSS"] - idle) / 1024,
                        "per_req_mib": (held["VmRSS"] - idle) / 1024 / n,
                        "peak_above_idle_mib": (held["VmHWM"] - idle) / 1024,
                        "rss_before_mib": before / 1024,
                    }
                )
                print(_row(rows[-1]), flush=True)
                await asyncio.sleep(1.0)
    finally:
        await pipeline.close()
    return rows


def _small(face: str) -> bytes:
    if face == "responses":
        return orjson.dumps({"model": "auto", "input": "hi", "max_output_tokens": 4, "store": False})
    return orjson.dumps({"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})


async def _one(http: httpx.AsyncClient, path: str, body: bytes, stream: bool) -> str:
    if not stream:
        answer = await http.post(path, content=body)
        return str(answer.status_code)
    async with http.stream("POST", path, content=body) as answer:
        async for _ in answer.aiter_bytes():
            pass
        return str(answer.status_code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--faces", default="chat,messages,responses")
    parser.add_argument("--bodies", default="agent,shots")
    parser.add_argument("--streams", default="0,1")
    parser.add_argument("--counts", default="1,10,30")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--keep", help="a directory to copy the gateways' logs to")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="inflight-memory-"))
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    print(
        " | ".join(
            (
                "face",
                "body",
                "body MiB",
                "stream",
                "N",
                "status",
                "submit s",
                "idle",
                "held above idle",
                "per request",
                "peak above idle",
                "before",
            )
        )
    )
    try:
        for face in args.faces.split(","):
            for kind in args.bodies.split(","):
                for stream in (s == "1" for s in args.streams.split(",")):
                    with gateways(server, db_url, tmp, count=1, env=ENV) as bases:
                        pid = bases.procs[0].pid
                        asyncio.run(
                            run_cases(
                                bases[0], pid, db_url, server.url, face, kind, stream, counts, args.settle
                            )
                        )
    finally:
        server.stop()
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("jetstream"))
        shutil.rmtree(tmp, ignore_errors=True)


def _row(found: dict[str, Any]) -> str:
    return " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in found.values())


if __name__ == "__main__":
    main()
