"""What a gateway process holds while large requests wait for their answers (a slow model: minutes), on a
real gateway process and nats-server: eight max-size bodies (screenshots) held in flight on each of the
chat, Anthropic (streamed) and Responses faces. Each held three to five times its body (the bytes, the
JSON read, the request, the task, the Anthropic face's and the stored conversation's copies of the JSON,
and what the allocator kept of them): ~250 MiB above idle for eight, past what a 512 MiB pod has. The
bounds are generous (measured: 8-16 MiB held, 73-93 MiB peak; bench/inflight_memory_bench.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from tests.integration.gateway.harness import Answerer, auth, gateways, make_org

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform != "linux", reason="reads the gateway's RSS from /proc"),
]

MIB = 1024 * 1024
MAX_BODY = 8 * MIB - 256 * 1024  # SWITCHYARD_MAX_BODY_BYTES as shipped
HELD = 8
ASKED = "what changed on the screen?"
ENV = {
    "SWITCHYARD_MAX_BODY_BYTES": str(MAX_BODY),
    "SWITCHYARD_MAX_PROMPT_CHARS": str(100 * MIB),
    "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "100",
    "SWITCHYARD_TASK_TIMEOUT_S": "60",
}


def _shots() -> list[str]:
    return [base64.b64encode(os.urandom(MIB)).decode() for _ in range(5)]  # ~6.7 MiB of base64


def _chat(shots: list[str]) -> bytes:
    parts = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{s}"}} for s in shots]
    return _asking("messages", [{"type": "text", "text": ASKED}, *parts], max_tokens=16)


def _messages(shots: list[str]) -> bytes:
    source = {"type": "base64", "media_type": "image/png"}
    blocks = [{"type": "image", "source": {**source, "data": s}} for s in shots]
    return _asking("messages", [*blocks, {"type": "text", "text": ASKED}], max_tokens=16, stream=True)


def _responses(shots: list[str]) -> bytes:
    parts = [{"type": "input_image", "image_url": f"data:image/png;base64,{s}"} for s in shots]
    # not stored (as Codex asks): a stored response keeps its input until it is stored with the answer
    content = [{"type": "input_text", "text": ASKED}, *parts]
    return _asking("input", content, max_output_tokens=16, store=False)


def _asking(turns: str, content: list[dict[str, Any]], **fields: object) -> bytes:
    return orjson.dumps({"model": "auto", **fields, turns: [{"role": "user", "content": content}]})


def _kib(pid: int) -> dict[str, int]:
    rows = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {n: int(v.split()[0]) for n, _, v in (r.partition(":") for r in rows) if n in ("VmRSS", "VmHWM")}


def test_large_requests_held_in_flight_keep_little_of_their_bodies(
    nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> None:
    shots = _shots()
    faces = {
        "/v1/chat/completions": _chat(shots),
        "/v1/messages": _messages(shots),
        "/v1/responses": _responses(shots),
    }
    assert all(6 * MIB < len(b) < MAX_BODY for b in faces.values())
    with gateways(nats_server, sqlite_url, tmp_path, env=ENV) as bases:
        org = asyncio.run(make_org(sqlite_url, "agents"))
        pid = bases.procs[0].pid

        async def scenario() -> dict[str, tuple[float, float]]:
            pipeline = await Answerer.start(nats_server.url)
            headers = {**auth(org.keys["admin"]), "content-type": "application/json"}
            found = {}
            try:
                async with httpx.AsyncClient(base_url=bases[0], headers=headers, timeout=60) as c:
                    small = {
                        "model": "auto",
                        "max_tokens": 4,
                        "messages": [{"role": "user", "content": "hi"}],
                    }
                    (await c.post("/v1/chat/completions", json=small)).raise_for_status()
                    await asyncio.sleep(0.5)
                    idle = _kib(pid)["VmRSS"]
                    for path, body in faces.items():
                        pipeline.hold = True
                        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                        sent = [asyncio.create_task(c.post(path, content=body)) for _ in range(HELD)]
                        async with asyncio.timeout(60):
                            while len(pipeline.held) < HELD:
                                await asyncio.sleep(0.05)
                        await asyncio.sleep(0.5)
                        now = _kib(pid)
                        await pipeline.release()
                        answers = await asyncio.gather(*sent)
                        assert [a.status_code for a in answers] == [200] * HELD, answers[0].text[:300]
                        found[path] = ((now["VmRSS"] - idle) / 1024, (now["VmHWM"] - idle) / 1024)
            finally:
                await pipeline.close()
            return found

        found = asyncio.run(scenario())
    for path, (held, peak) in found.items():
        # in MiB above idle: what eight bodies of ~7 MiB each keep while they wait, and the most they took
        assert held < HELD * MAX_BODY / MIB, (path, found)
        assert peak < 240, (path, found)
