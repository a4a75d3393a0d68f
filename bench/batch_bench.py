"""A batch of N lines through a real gateway: how fast it validates, runs and finalizes, and the gateway's
peak memory while it does.

A nats-server, SQLite and one gateway process (as tests/integration/gateway/test_batches_http.py starts
them); the pipeline is the tests' stand-in (`Answerer`: every task answered at once, in this process), so
what is measured is the gateway's batch machinery, not a model. The organisation is on the enterprise plan
(no budget) and the rate limits are raised out of the way (a user's 100 requests a minute would otherwise
pace the batch); the batch concurrency and the organisation's concurrent tasks are the defaults unless
given (batch lines hold at most half of the latter: `SWITCHYARD_BATCH_INTERACTIVE_SHARE`).

    .venv/bin/python bench/batch_bench.py [--lines 5000] [--line-bytes 300] [--concurrency 8]
                                          [--org-tasks 20] [--keep DIR]

`--lines 50000 --line-bytes 2000` is OpenAI's limit (50,000 requests, ~100 MiB). Prints: the upload, then
per phase the seconds it took (validating, in progress, finalizing), the lines a second while in
progress, the output file's size, and the gateway's RSS: before the upload, its peak (VmHWM) once the file
is uploaded (the Files API's part), and its peak at the end (the batch's).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchyard.cli.processes import NatsServer
from tests.integration.gateway.harness import Answerer, Bases, auth, gateways, make_org

UNLIMITED = {
    "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "100000000",
    "SWITCHYARD_LIMIT_ORG_REQUESTS_PER_MIN": "100000000",
    "SWITCHYARD_LIMIT_GLOBAL_REQUESTS_PER_MIN": "100000000",
    "SWITCHYARD_LIMIT_USER_TOKENS_PER_DAY": "100000000000",
    "SWITCHYARD_LIMIT_ORG_TOKENS_PER_DAY": "100000000000",
}


def batch_file(lines: int, line_bytes: int) -> bytes:
    """`lines` chat requests, each line about `line_bytes` long (its prompt padded)."""
    out = io.BytesIO()
    for i in range(lines):
        body = {
            "model": "auto",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"question {i} "}],
        }
        line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        pad = max(line_bytes - len(orjson.dumps(line)) - 1, 0)
        body["messages"][0]["content"] += "x" * pad  # type: ignore[index]
        out.write(orjson.dumps(line) + b"\n")
    return out.getvalue()


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = row.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS (Linux's clear_refs 5), so the next peak read is the next step's own."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def run(base: str, key: str, url: str, data: bytes, pid: int) -> dict[str, float]:
    pipeline = await Answerer.start(url)
    found: dict[str, float] = {"file_mib": len(data) / 2**20, "rss_before_mib": rss_kib(pid)["VmRSS"] / 1024}
    try:
        async with httpx.AsyncClient(base_url=base, headers=auth(key), timeout=600) as http:
            started = time.monotonic()
            upload = await http.post(
                "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}
            )
            upload.raise_for_status()
            found["upload_s"] = time.monotonic() - started
            found["rss_upload_peak_mib"] = rss_kib(pid)["VmHWM"] / 1024  # the Files API's part
            spec = {
                "input_file_id": upload.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            }
            created = (await http.post("/v1/batches", json=spec)).json()
            at = {"validating": time.monotonic()}
            status = created["status"]
            while status not in ("completed", "failed", "cancelled", "expired"):
                await asyncio.sleep(0.2)
                batch = (await http.get(f"/v1/batches/{created['id']}")).json()
                if batch["status"] != status:  # the peak so far, as the phase `status` ends
                    found[f"rss_peak_{status}_mib"] = rss_kib(pid)["VmHWM"] / 1024
                status = batch["status"]
                at.setdefault(status, time.monotonic())
            if status != "completed":
                raise SystemExit(f"the batch ended {status}: {batch.get('errors')}")
            ran = at.get("finalizing", at["completed"]) - at["in_progress"]
            found["validate_s"] = at["in_progress"] - at["validating"]
            found["run_s"] = ran
            found["finalize_s"] = at["completed"] - at.get("finalizing", at["completed"])
            found["lines_per_s"] = batch["request_counts"]["completed"] / ran
            found["completed"] = batch["request_counts"]["completed"]
            output = await http.get(f"/v1/files/{batch['output_file_id']}/content")
            found["output_mib"] = len(output.content) / 2**20
            found["peak_rss_mib"] = rss_kib(pid)["VmHWM"] / 1024
            found["rss_end_mib"] = rss_kib(pid)["VmRSS"] / 1024
    finally:
        await pipeline.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--line-bytes", type=int, default=300, help="each input line's length, about")
    parser.add_argument("--concurrency", type=int, default=8, help="SWITCHYARD_BATCH_CONCURRENCY")
    parser.add_argument(
        "--org-tasks", type=int, default=20, help="SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS (half for batches)"
    )
    parser.add_argument("--keep", type=Path, help="keep the work directory (logs) here")
    args = parser.parse_args()
    data = batch_file(args.lines, args.line_bytes)
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    env = {
        **UNLIMITED,
        "SWITCHYARD_BATCH_CONCURRENCY": str(args.concurrency),
        "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": str(args.org_tasks),
    }
    try:
        with gateways(server, db_url, tmp, count=1, env=env) as bases:
            found = asyncio.run(_bench(bases, db_url, server.url, data))
    finally:
        server.stop()
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"lines {args.lines}, ~{args.line_bytes} bytes each, concurrency {args.concurrency}, "
        f"organisation's concurrent tasks {args.org_tasks}"
    )
    for name, value in found.items():
        print(f"{name:>16} {value:10.2f}")


async def _bench(bases: Bases, db_url: str, url: str, data: bytes) -> dict[str, float]:
    org = await make_org(db_url, "bench", roles=("member",))
    return await run(bases[0], org.keys["member"], url, data, bases.procs[0].pid)


if __name__ == "__main__":
    main()
