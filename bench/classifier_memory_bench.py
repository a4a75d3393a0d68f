"""The classifier's memory under a stream of distinct prompts: does it level off, and at what?

    .venv/bin/python bench/classifier_memory_bench.py [--reuse 4096] [--rate 50] [--seconds 240] [--every 15]
        [--nats-port P] [--monitor-port P]

A real nats-server and the classifier service as its own process (as `switchyard up` starts it), fed
`--rate` tasks a second for `--seconds`, each prompt distinct (as the soak's "Soak request {n}: ..."), so
every one is a new entry of the prediction reuse cache (`SWITCHYARD_CLASSIFIER_REUSE_SIZE`, `--reuse`; 0
keeps none) until it holds `--reuse`. The process's RSS is read every `--every` seconds, with how many
entries the cache holds by then (min(classified, reuse)). Then, in this process, the cache's own bytes per
entry: `--reuse` real predictions (the service's heads on distinct prompts) put in a `reuse.Predictions`,
measured with tracemalloc. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import nats
from classifier_bench import _ready, prompts, task

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskClassified


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def feed(url: str, pid: int, *, rate: float, seconds: float, every: float, reuse: int) -> None:
    nc = await nats.connect(url)
    publisher = bus.EventPublisher(nc.jetstream(), source="bench/gateway")
    classified = 0

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        nonlocal classified
        _, payload = decode(msg.data, (TaskClassified,))
        classified += isinstance(payload, TaskClassified)

    await nc.subscribe(subjects.TASK_CLASSIFIED, cb=on_msg)
    texts = prompts(4096)
    started = time.monotonic()
    next_sample = started
    n = 0
    print(f"{'s':>6} {'sent':>7} {'classified':>10} {'cache entries':>13} {'RSS MB':>8}", flush=True)
    while (now := time.monotonic()) < started + seconds:
        if now >= next_sample:
            entries = min(classified, reuse)
            print(
                f"{now - started:6.0f} {n:7d} {classified:10d} {entries:13d} {rss_mb(pid):8.1f}", flush=True
            )
            next_sample += every
        target = int((now - started) * rate)
        while n < target:
            prompt = f"Memory request {n}: {texts[n % len(texts)]}"  # distinct, as the soak's
            await publisher.publish(task(n, prompt), tenant_id="bench")
            n += 1
        await asyncio.sleep(0.02)
    deadline = time.monotonic() + 60
    while classified < n and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    print(
        f"{time.monotonic() - started:6.0f} {n:7d} {classified:10d} {min(classified, reuse):13d} "
        f"{rss_mb(pid):8.1f}  (all classified)",
        flush=True,
    )
    await nc.close()


def cache_bytes(entries: int) -> None:
    """The reuse cache's own bytes: `entries` real predictions of distinct prompts, traced."""
    from switchyard.classifier import reuse
    from switchyard.classifier.classify import Classifier
    from switchyard.classifier.config import ClassifierSettings

    settings = ClassifierSettings()
    classifier = Classifier.load(
        models_dir=settings.models_dir,
        artifact_dir=settings.classifier_artifact_dir,
        precision=settings.classifier_precision,
        threads=settings.classifier_threads,
        build=settings.classifier_build_models,
        max_tokens=settings.classifier_max_tokens,
    )
    texts = [f"Memory request {n}: {t}" for n, t in enumerate(prompts(entries))]
    classifier.predict(texts[:64])  # warm: the encoder's own first-call allocations are not the cache's
    cache = reuse.Predictions(entries)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(0, entries, 64):
        batch = texts[i : i + 64]
        for text, prediction in zip(batch, classifier.predict(batch), strict=True):
            cache.put(cache.key("bench", text) or b"", prediction)
    gc.collect()
    after = tracemalloc.take_snapshot()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(
        f"reuse cache: {len(cache)} entries (predictions and keys made under the trace): "
        f"{grown / 1024 / 1024:.2f} MB, {grown / entries:.0f} B each"
    )
    for stat in after.compare_to(before, "lineno")[:5]:
        print(f"  {stat}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reuse", type=int, default=4096)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--every", type=float, default=15.0)
    parser.add_argument("--nats-port", type=int, default=None)
    parser.add_argument("--monitor-port", type=int, default=None)
    parser.add_argument("--cache-only", action="store_true", help="only the in-process cache measure")
    args = parser.parse_args()
    if not args.cache_only:
        with tempfile.TemporaryDirectory(prefix="classifier-memory-") as tmp:
            server = NatsServer(Path(tmp) / "js", port=args.nats_port, monitor_port=args.monitor_port).start()
            env = {
                **os.environ,
                "SWITCHYARD_NATS_URL": server.url,
                "SWITCHYARD_LOG_LEVEL": "WARNING",
                "HF_HUB_OFFLINE": "1",
                "SWITCHYARD_CLASSIFIER_REUSE_SIZE": str(args.reuse),
            }
            with open(Path(tmp) / "classifier.log", "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "switchyard.classifier"], env=env, stdout=log, stderr=log
                )
                try:
                    asyncio.run(_ready(server.url, [proc.pid]))
                    print(
                        f"classifier pid {proc.pid}, reuse {args.reuse}, "
                        f"{args.rate}/s for {args.seconds:.0f} s"
                    )
                    asyncio.run(
                        feed(
                            server.url,
                            proc.pid,
                            rate=args.rate,
                            seconds=args.seconds,
                            every=args.every,
                            reuse=args.reuse,
                        )
                    )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=15)
                    server.stop()
    if args.reuse > 0:
        cache_bytes(args.reuse)


if __name__ == "__main__":
    main()
