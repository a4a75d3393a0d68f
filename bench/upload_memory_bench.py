"""A gateway's peak memory for its largest bodies: a message batch create (`POST /v1/messages/batches`) of
a few sizes, a Files API upload (`POST /v1/files`, purpose batch), and chat completions at
SWITCHYARD_MAX_BODY_BYTES, one and several at once.

A nats-server, SQLite and one gateway process per case (as tests/integration/gateway/test_batches_http.py
starts them, with the shipped body limits), so that each case's peak is its own: the peak (VmHWM) is reset
through /proc/PID/clear_refs once the gateway is idle, then read after the request. The pipeline is the
tests' stand-in (`Answerer`): what is measured is the gateway, not a model. Linux only.

    .venv/bin/python bench/upload_memory_bench.py [--cases mb20,mb50,mb100,file100,chat1,chat4]

Prints, per case: the body's size, the answer's status, the seconds it took, the gateway's RSS when idle
and its peak above that.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_bench import UNLIMITED, batch_file, reset_peak, rss_kib
from switchyard.cli.processes import NatsServer
from tests.integration.gateway.harness import Answerer, auth, gateways, make_org

MIB = 1024 * 1024
MAX_BODY = 8 * MIB - 256 * 1024  # SWITCHYARD_MAX_BODY_BYTES as shipped
JSON = {"content-type": "application/json"}
ENV = {
    **UNLIMITED,
    "SWITCHYARD_MAX_BODY_BYTES": str(MAX_BODY),
    "SWITCHYARD_MAX_PROMPT_CHARS": "100000000",  # a completion's prompt read and sent, not refused
}


def message_batch(mib: float, request_bytes: int = 2000) -> bytes:
    """`{"requests": [...]}` of about `mib` MiB, each request about `request_bytes` long."""
    one = len(orjson.dumps(_request(99_999, request_bytes))) + 1  # its comma
    return orjson.dumps({"requests": [_request(i, request_bytes) for i in range(int(mib * MIB) // one)]})


def _request(i: int, size: int) -> dict[str, object]:
    params = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": f"q{i} "}]}
    params["messages"][0]["content"] += "x" * max(size - 120, 0)  # type: ignore[index]
    return {"custom_id": f"r{i}", "params": params}


def chat(size: int) -> bytes:
    pad = "word " * ((size - 200) // 5)
    return orjson.dumps({"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": pad}]})


async def measure(base: str, key: str, pid: int, case: str) -> dict[str, float | str]:
    async with httpx.AsyncClient(base_url=base, headers=auth(key), timeout=600) as http:
        # the first requests' imports, caches and models (a completion's guardrails) are not the case's
        warm = await http.post("/v1/chat/completions", content=chat(4096), headers=JSON)
        warm.raise_for_status()
        await asyncio.sleep(1.0)
        reset_peak(pid)
        idle = rss_kib(pid)["VmRSS"]
        started = time.monotonic()
        size, statuses = await _send(http, case)
        took = time.monotonic() - started
        peak = rss_kib(pid)["VmHWM"]
    return {
        "case": case,
        "body_mib": size / MIB,
        "status": ",".join(statuses),
        "seconds": took,
        "idle_mib": idle / 1024,
        "peak_above_idle_mib": (peak - idle) / 1024,
    }


async def _send(http: httpx.AsyncClient, case: str) -> tuple[int, list[str]]:
    if case.startswith("mb"):
        body = message_batch(float(case[2:]))
        answer = await http.post("/v1/messages/batches", content=body, headers=JSON)
        return len(body), [str(answer.status_code)]
    if case.startswith("file"):
        data = batch_file(int(float(case[4:]) * MIB) // 2000, 2000)
        files = {"file": ("in.jsonl", data)}
        answer = await http.post("/v1/files", files=files, data={"purpose": "batch"})
        return len(data), [str(answer.status_code)]
    body, many = chat(MAX_BODY - 1024), int(case[4:])
    answers = await asyncio.gather(
        *(http.post("/v1/chat/completions", content=body, headers=JSON) for _ in range(many))
    )
    return len(body), [str(a.status_code) for a in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cases", default="mb20,mb50,mb100,file100,chat1,chat4")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="upload-memory-"))
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    rows = []
    try:
        for case in args.cases.split(","):
            with gateways(server, db_url, tmp, count=1, env=ENV) as bases:
                rows.append(asyncio.run(_case(bases[0], bases.procs[0].pid, db_url, server.url, case)))
            print(_row(rows[-1]), flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _case(base: str, pid: int, db_url: str, url: str, case: str) -> dict[str, float | str]:
    org = await make_org(db_url, f"bench-{case}-{time.monotonic_ns()}", roles=("member",))
    pipeline = await Answerer.start(url)
    try:
        return await measure(base, org.keys["member"], pid, case)
    finally:
        await pipeline.close()


def _row(found: dict[str, float | str]) -> str:
    return " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in found.values())


if __name__ == "__main__":
    main()
