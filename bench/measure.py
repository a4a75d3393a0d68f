"""Measuring systems from the outside: CPU time and peak RSS of a process tree (from /proc), HTTP load
with wrk (JSON), and time-to-first-token with a raw-socket streaming client."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_pids(root: int) -> list[int]:
    tree = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return total


def wait_drained(monitor_port: int | None, *, timeout_s: float = 120.0) -> float:
    """Waits until every JetStream consumer of the nats-server behind `monitor_port` has nothing pending
    and nothing unacked; returns the seconds waited (timeout_s if it never happened; 0 for a system without
    a bus). The work a system defers past the load (Switchyard's ledger and billing, off the request path)
    is then done, so CPU read afterwards includes it, and it does not run into the next system's
    measurement."""
    import httpx

    if monitor_port is None:
        return 0.0
    began = time.monotonic()
    url = f"http://127.0.0.1:{monitor_port}/jsz?consumers=1"
    report_at = began + 2.0  # a slow drain says, every 2 s, which consumers hold it up
    while (now := time.monotonic()) - began < timeout_s:
        data = httpx.get(url, timeout=5).json()
        busy = {
            consumer["name"]: (consumer["num_pending"], consumer["num_ack_pending"])
            for account in data.get("account_details", [])
            for stream in account.get("stream_detail", [])
            for consumer in stream.get("consumer_detail") or []
            if consumer["num_pending"] or consumer["num_ack_pending"]
        }
        if not busy:
            return now - began
        if now >= report_at:
            print(f"    still draining (pending, unacked): {busy}", file=sys.stderr, flush=True)
            report_at = now + 2.0
        time.sleep(0.1)
    return timeout_s


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int = 0
    ttft_p50_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer {key}"
local bodies = {{ {bodies} }}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def _bodies(body: str | Sequence[str]) -> list[str]:
    return [body] if isinstance(body, str) else list(body)


def run_wrk(url: str, body: str | Sequence[str], key: str, *, connections: int, seconds: int) -> LoadResult:
    """`body`: one request body, or several sent in turn."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT.format(bodies=", ".join(_lua_string(b) for b in _bodies(body)), key=key))
        script = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "--timeout",
                "30s",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(script)
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    duration = re.search(r"requests in ([\d.]+)(s|m)", out)
    secs = float(duration.group(1)) * (60 if duration.group(2) == "m" else 1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return LoadResult(requests, secs, _ms(pct["50"]), _ms(pct["90"]), _ms(pct["99"]), errors)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _stream_once(host: str, port: int, path: str, body: bytes, key: str) -> tuple[float, float, bool]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {key}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    ttft = None
    buf = b""
    ok = False
    while True:
        data = await reader.read(65536)
        if not data:
            break
        buf += data
        if ttft is None and _has_text(buf):
            ttft = time.perf_counter() - started
        if b"data: [DONE]" in buf:
            ok = True
            break
    writer.close()
    total = time.perf_counter() - started
    return (ttft if ttft is not None else total), total, ok and buf.startswith(b"HTTP/1.1 200")


def _has_text(buf: bytes) -> bool:
    """True once an SSE event carries non-empty delta content (the first token)."""
    return re.search(rb'"content":\s*"[^"]', buf) is not None


async def _stream_load(
    url: str, body: str | Sequence[str], key: str, concurrency: int, seconds: float
) -> LoadResult:
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    assert m, url
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    payloads = itertools.cycle([b.encode() for b in _bodies(body)])
    ttfts: list[float] = []
    totals: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            try:
                payload = next(payloads)
                ttft, total, ok = await asyncio.wait_for(_stream_once(host, port, path, payload, key), 60)
            except (OSError, TimeoutError):
                errors += 1
                continue
            if ok:
                ttfts.append(ttft)
                totals.append(total)
            else:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    if not totals:
        return LoadResult(0, elapsed, 0, 0, 0, errors)
    q = statistics.quantiles(totals, n=100) if len(totals) > 1 else [totals[0]] * 99
    return LoadResult(
        len(totals),
        elapsed,
        q[49] * 1000,
        q[89] * 1000,
        q[98] * 1000,
        errors,
        ttft_p50_ms=statistics.median(ttfts) * 1000,
    )


def run_stream(
    url: str, body: str | Sequence[str], key: str, *, concurrency: int, seconds: float
) -> LoadResult:
    return asyncio.run(_stream_load(url, body, key, concurrency, seconds))
