"""What a large request (a coding agent's long session, screenshots) costs each service, and what happens
to one larger than the bus carries.

Starts the mock upstream and `switchyard up` (every service its own process, on 127.0.0.1) with the body
and prompt limits raised, then sends, one at a time, chat requests of a few sizes: a small one (the
baseline), text prompts of `--sizes` MB (a conversation of code-like turns, about 4 characters a token)
and one with a base64 screenshot of `--image-mb`. Each request's CPU is read per process from /proc
before it and after every consumer has drained (so the ledger's and billing's work counts), and printed
as CPU ms per request and, over the baseline, per MB of body; "next turn" is the same session sent again
with one more turn, as an agent does. `--probe` also sends bodies of `--probe-mb`
MB and prints what each gets (status, code, seconds).

    .venv/bin/python bench/large_bench.py [--sizes 1,3] [--repeat 3] [--probe] [--env K=V]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import _name
from measure import cpu_seconds, tree_pids, wait_drained
from run import add_env_option, env_settings
from systems import start_switchyard, start_upstream

MB = 1024 * 1024
SERVICES = ("gateway", "classifier", "router", "executor", "billing", "audit", "nats-server")
VOCABULARY = (
    "def return self import async await class if else for in range len dict list str int None True "
    "value result request response error handler config settings path file line test assert the a to "
    "of and with from print json bytes encode decode open read write parse token model prompt event"
)


def conversation(chars: int, seed: int) -> list[dict[str, str]]:
    """An agent's session of about `chars` characters: alternating user (tool output) and assistant turns
    of code-like words, each turn ~8 KB. The seed makes each request's text its own."""
    rng = random.Random(seed)
    words = VOCABULARY.split()
    turns: list[dict[str, str]] = [{"role": "system", "content": "You are a coding agent."}]
    size = 0
    while size < chars:
        lines = []
        for _ in range(100):
            words = rng.choices(words, k=rng.randint(4, 14))
            lines.append("    " * rng.randint(0, 3) + " ".join(words) + f"_{rng.randint(0, 999)}")
        text = "\n".join(lines)
        turns.append({"role": "user" if len(turns) % 2 else "assistant", "content": text})
        size += len(text)
    if turns[-1]["role"] != "user":
        turns.append({"role": "user", "content": "go on"})
    return turns


def body(*, text_mb: float, image_mb: float = 0.0, seed: int, turn: int | None = None) -> bytes:
    """A chat body: a session of `text_mb`, a screenshot of `image_mb`; with `turn`, the same session
    (same seed) with one more short user turn, as an agent sends it again on its next turn."""
    messages: list[dict[str, object]] = list(conversation(int(text_mb * MB), seed))
    if turn is not None:
        messages += [{"role": "assistant", "content": f"done {turn}"}, {"role": "user", "content": "next"}]
    if image_mb:
        raw = random.Random(seed).randbytes(int(image_mb * MB * 3 / 4))
        url = "data:image/png;base64," + base64.b64encode(raw).decode()
        parts = [
            {"type": "text", "text": "this screenshot"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        messages.append({"role": "user", "content": parts})
    return json.dumps({"model": "auto", "max_tokens": 16, "messages": messages}).encode()


def per_service(root: int) -> dict[str, float]:
    out: dict[str, float] = dict.fromkeys(SERVICES, 0.0)
    for pid in tree_pids(root):
        name = _name(pid)
        if name in out:
            out[name] += cpu_seconds([pid])
    return out


def send(client: httpx.Client, base: str, key: str, data: bytes) -> tuple[int, str, float]:
    began = time.monotonic()
    r = client.post(
        f"{base}/chat/completions",
        content=data,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    code = ""
    if r.status_code != 200:
        try:
            code = r.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = r.text[:80]
    return r.status_code, code, time.monotonic() - began


def measure(system: object, client: httpx.Client, label: str, bodies: list[bytes]) -> dict[str, float]:
    """CPU ms per request and service, the median over `bodies` (sent one at a time)."""
    samples: dict[str, list[float]] = {name: [] for name in SERVICES}
    for data in bodies:
        before = per_service(system.pid)  # type: ignore[attr-defined]
        status, code, took = send(client, system.base_url, system.key, data)  # type: ignore[attr-defined]
        wait_drained(system.monitor_port, timeout_s=60)  # type: ignore[attr-defined]
        after = per_service(system.pid)  # type: ignore[attr-defined]
        for name in SERVICES:
            samples[name].append((after[name] - before[name]) * 1000)
        print(f"  {label}: {len(data) / MB:.2f} MB -> {status} {code} in {took:.2f} s", flush=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,3", help="text prompt sizes, MB (comma-separated)")
    parser.add_argument(
        "--image-mb", type=float, default=2.0, help="a screenshot's base64 size, MB (0: none)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="requests per size (bounded: at most 5)")
    parser.add_argument("--probe", action="store_true", help="also send the --probe-mb bodies")
    parser.add_argument("--probe-mb", default="5,9", help="bodies to probe the bus limit with, MB")
    add_env_option(parser)
    args = parser.parse_args()
    repeat = max(1, min(args.repeat, 5))
    env = {
        "SWITCHYARD_MAX_BODY_BYTES": str(32 * MB),
        "SWITCHYARD_MAX_PROMPT_CHARS": str(32 * MB),
        "SWITCHYARD_TASK_TIMEOUT_S": "30",
        **env_settings(parser, args.env),
    }
    upstream = start_upstream(latency_ms=1, chunks=1, chunk_gap_ms=0)
    system = start_switchyard(upstream, env)
    try:
        with httpx.Client(timeout=90) as client:
            send(client, system.base_url, system.key, body(text_mb=0.001, seed=0))  # warm up
            rows = {
                "baseline": (
                    0.0,
                    measure(
                        system,
                        client,
                        "baseline",
                        [body(text_mb=0.002, seed=s) for s in range(1, repeat + 1)],
                    ),
                )
            }
            for size in (float(s) for s in args.sizes.split(",") if s):
                bodies = [body(text_mb=size, seed=100 + s) for s in range(repeat)]
                rows[f"text {size:g} MB"] = (
                    len(bodies[0]) / MB,
                    measure(system, client, f"text {size:g} MB", bodies),
                )
            for size in (float(s) for s in args.sizes.split(",") if s):
                # an agent's next turns: the same session again (its first turn sent before measuring)
                send(client, system.base_url, system.key, body(text_mb=size, seed=150, turn=0))
                bodies = [body(text_mb=size, seed=150, turn=n) for n in range(1, repeat + 1)]
                label = f"next turn {size:g} MB"
                rows[label] = (len(bodies[0]) / MB, measure(system, client, label, bodies))
            if args.image_mb:
                bodies = [body(text_mb=0.05, image_mb=args.image_mb, seed=200 + s) for s in range(repeat)]
                rows[f"image {args.image_mb:g} MB"] = (
                    len(bodies[0]) / MB,
                    measure(system, client, f"image {args.image_mb:g} MB", bodies),
                )
            _print(rows)
            if args.probe:
                for size in (float(s) for s in args.probe_mb.split(",") if s):
                    data = body(text_mb=0.05, image_mb=size, seed=300)
                    status, code, took = send(client, system.base_url, system.key, data)
                    print(
                        f"probe {len(data) / MB:.2f} MB body (a screenshot): {status} {code} in {took:.2f} s"
                    )
    finally:
        system.stop()
        upstream.stop()
    return 0


def _print(rows: dict[str, tuple[float, dict[str, float]]]) -> None:
    base = rows["baseline"][1]
    print("\nCPU ms per request (median), and per MB of body over the baseline request")
    print(f"{'request':<16}{'MB':>6} " + " ".join(f"{n[:10]:>11}" for n in SERVICES))
    for label, (mb, cpu) in rows.items():
        print(f"{label:<16}{mb:>6.2f} " + " ".join(f"{cpu[n]:>11.1f}" for n in SERVICES))
        if mb:
            per = " ".join(f"{(cpu[n] - base[n]) / mb:>11.1f}" for n in SERVICES)
            print(f"{'  per MB':<16}{'':>6} {per}")


if __name__ == "__main__":
    sys.exit(main())
