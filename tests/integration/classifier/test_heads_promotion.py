"""Promoted heads go live on every running classifier replica without a restart (real nats-server, the
classifier as processes, real ONNX inference): under load no task is lost or classified twice, and every
event names the heads that labelled it; corrupt or incompatible heads are refused, a rollback is one
command, and a replica started later loads the promoted heads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest

from switchyard.classifier import artifact, promotion
from switchyard.classifier.classify import Classifier
from switchyard.classifier.heads import Heads, Mlp
from switchyard.cli.main import main
from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import bus, objects, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import ChatRequest, TaskClassified, TaskSubmitted
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration
TOPICS = ("the sea", "a tax form", "prime numbers", "a python bug", "a train timetable", "my cat", "jazz")
ASKS = ("Write a short poem about {}.", "Explain {} to a child.", "Summarise what you know about {}.")


def tilted(heads: Heads, version: str) -> Heads:
    """Other predictions (chitchat raised), same shapes: what a retrained head looks like to a replica."""
    last = heads.type_head.biases[-1].copy()
    last[heads.labels.index("chitchat")] += 3.0
    return replace(
        heads, version=version, type_head=Mlp(heads.type_head.weights, (*heads.type_head.biases[:-1], last))
    )


@pytest.fixture(scope="module")
def shipped() -> Heads:
    return artifact.load()


@pytest.fixture
def promoted_dir(tmp_path: Path, shipped: Heads) -> Path:
    return artifact.save(tmp_path / "promoted", tilted(shipped, "heads-promoted"), dict(shipped.manifest))


def replica(nats_url: str, name: str, tmp_path: Path, metrics_port: int | None = None) -> BusService:
    env = {
        "SWITCHYARD_NATS_URL": nats_url,
        "SWITCHYARD_INSTANCE": name,
        "SWITCHYARD_CLASSIFIER_WORKERS": "16",
        "SWITCHYARD_CLASSIFIER_PROMOTION_POLL_S": "2",
    }
    if metrics_port:
        env["SWITCHYARD_METRICS_PORT"] = str(metrics_port)
    return BusService("classifier", env=env, log_path=tmp_path / f"{name}.log")


async def started(service: BusService, js: nats.js.JetStreamContext) -> promotion.ReplicaHeads:
    """Started, and ready: its status entry is written in its setup, just before its consumer starts (a
    ping alone would be answered by another replica)."""
    await service.start(timeout=90)
    return await until(js, lambda r: r.instance == service.env["SWITCHYARD_INSTANCE"], timeout=60)


async def until(
    js: nats.js.JetStreamContext, want: Callable[[promotion.ReplicaHeads], bool], *, timeout: float = 30
) -> promotion.ReplicaHeads:
    deadline = time.monotonic() + timeout
    while True:
        for r in await promotion.replica_reports(js):
            if want(r):
                return r
        assert time.monotonic() < deadline, (
            f"no replica report matched: {await promotion.replica_reports(js)}"
        )
        await asyncio.sleep(0.02)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, ["classifier", *argv])


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


def task(n: int) -> TaskSubmitted:
    prompt = ASKS[n % len(ASKS)].format(TOPICS[(n // len(ASKS)) % len(TOPICS)]) + f" (#{n})"
    return TaskSubmitted(
        task_id=f"t{n:04d}",
        tenant_id="acme",
        request=ChatRequest(messages=[{"role": "user", "content": prompt}]),
        submitted_at=datetime.now(UTC),
    )


async def test_a_promotion_reaches_both_replicas_under_load_without_losing_a_task(
    nats_server: NatsServer,
    nc: nats.NATS,
    tmp_path: Path,
    promoted_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    js = nc.jetstream()
    replicas = [replica(nats_server.url, name, tmp_path) for name in ("cl-a", "cl-b")]
    try:
        for r in replicas:
            old = await started(r, js)
        events: dict[str, list[TaskClassified]] = {}

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            _, payload = decode(msg.data, (TaskClassified,))
            assert isinstance(payload, TaskClassified)
            events.setdefault(payload.task.task_id, []).append(payload)

        await nc.subscribe(subjects.TASK_CLASSIFIED, cb=on_msg)
        publisher = bus.EventPublisher(js, source="test/gateway")
        rate, seconds, promote_at = 20, 20.0, 7.0
        sent: dict[str, tuple[TaskSubmitted, float]] = {}

        async def load() -> None:
            start = time.monotonic()
            for n in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                t = task(n)
                sent[t.task_id] = (t, time.monotonic())
                await publisher.publish(t, tenant_id=t.tenant_id)

        loading = asyncio.create_task(load())
        await asyncio.sleep(promote_at)
        promoted_at = time.monotonic()
        assert await cli("promote", "--artifact", str(promoted_dir), "--nats-url", nats_server.url) == 0
        written = time.monotonic()
        want = promotion.read_folder(promoted_dir).ref.weights_sha256
        seen: dict[str, float] = {}
        while len(seen) < 2:
            for r in await promotion.replica_reports(js):
                if r.weights_sha256 == want:
                    seen.setdefault(r.instance, time.monotonic())
            await asyncio.sleep(0.01)
        everywhere = max(seen.values())
        print(
            f"\npromote command {written - promoted_at:.3f} s; every replica on the new heads "
            f"{everywhere - written:.3f} s after it returned "
            f"({ {k: round(v - written, 3) for k, v in seen.items()} })"
        )
        assert everywhere - written < 3.0
        for r in replicas:  # the replica's own measure: from the pointer's time to its swap
            swapped = [line for line in r.log_path.read_text().splitlines() if "heads swapped" in line]
            print(r.env["SWITCHYARD_INSTANCE"], swapped[-1].split("(", 1)[-1])
        await loading
        deadline = time.monotonic() + 30
        while len(events) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

        assert set(events) == set(sent), f"lost: {sorted(set(sent) - set(events))[:5]}"
        twice = {
            tid: [e.classification.model_version for e in evs] for tid, evs in events.items() if len(evs) > 1
        }
        assert not twice, f"classified more than once: {list(twice.items())[:3]}"
        new_version = old.model_version.replace(old.heads_version, "heads-promoted", 1)
        versions = {tid: evs[0].classification.model_version for tid, evs in events.items()}
        assert set(versions.values()) == {old.model_version, new_version}
        for tid, (_, at) in sent.items():
            if at < promoted_at:
                assert versions[tid] == old.model_version, tid
            if at > everywhere + 0.5:  # submitted once both replicas swapped (and any batch in flight ran)
                assert versions[tid] == new_version, tid
        # every event is what the heads it names give for its prompt alone: the type exactly; the scores
        # and complexity to their last (4th) decimal, which the heads' batched matmul can move by one
        # (probabilities within ~1e-7 of the prompt's alone: "#305" with "#354" and "#84", 0.6889 / 0.6888)
        by_version = {
            old.model_version: Classifier.load(),
            new_version: Classifier.load(artifact_dir=promoted_dir),
        }
        for tid, evs in events.items():
            c = evs[0].classification
            (expected,) = by_version[c.model_version].predict([sent[tid][0].request.messages[0].text()])
            assert c.type == expected.type, tid
            assert abs(c.complexity - expected.complexity) <= 1.01e-4, tid
            assert max(abs(c.scores[k] - v) for k, v in expected.scores.items()) <= 1.01e-4, tid
        near = [
            evs[0].classification.latency_ms
            for tid, evs in events.items()
            if abs(sent[tid][1] - written) < 1.5
        ]
        rest = sorted(
            evs[0].classification.latency_ms
            for tid, evs in events.items()
            if abs(sent[tid][1] - written) >= 1.5
        )
        print(
            f"{len(sent)} tasks at {rate}/s: {sum(v == new_version for v in versions.values())} on the "
            f"promoted heads, none lost or classified twice; classifier latency within 1.5 s of the "
            f"promotion: max {max(near):.1f} ms over {len(near)} tasks; elsewhere p50 "
            f"{rest[len(rest) // 2]:.1f} ms, max {rest[-1]:.1f} ms"
        )
    finally:
        for r in replicas:
            r.stop()


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_bad_heads_are_refused_a_rollback_is_one_command_and_a_late_replica_loads_the_live_heads(
    nats_server: NatsServer,
    nc: nats.NATS,
    tmp_path: Path,
    shipped: Heads,
    promoted_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    js = nc.jetstream()
    url = nats_server.url
    port = free_port()
    first = replica(url, "cl-first", tmp_path, metrics_port=port)
    late = replica(url, "cl-late", tmp_path)
    try:
        old = await started(first, js)
        classified: dict[str, TaskClassified] = {}

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            _, payload = decode(msg.data, (TaskClassified,))
            assert isinstance(payload, TaskClassified)
            classified[payload.task.task_id] = payload

        await nc.subscribe(subjects.TASK_CLASSIFIED, cb=on_msg)
        publisher = bus.EventPublisher(js, source="test/gateway")

        async def classify(t: TaskSubmitted) -> str:
            await publisher.publish(t, tenant_id=t.tenant_id)
            deadline = time.monotonic() + 30
            while t.task_id not in classified:
                assert time.monotonic() < deadline, f"{t.task_id} not classified"
                await asyncio.sleep(0.02)
            return classified[t.task_id].classification.model_version

        assert await classify(task(7)) == old.model_version
        assert await cli("rollback", "--nats-url", url) == 2
        assert "no classifier heads were promoted: nothing to roll back" in capsys.readouterr().err
        good = promotion.read_folder(promoted_dir).ref
        assert await cli("promote", "--artifact", str(promoted_dir), "--nats-url", url, "--wait", "10") == 0
        assert "1 replica(s) on heads-promoted" in capsys.readouterr().out
        on_good = await until(js, lambda r: r.weights_sha256 == good.weights_sha256)
        # the same tenant's same prompt again: not the old heads' remembered prediction, the new heads'
        assert await classify(task(7).model_copy(update={"task_id": "again"})) == on_good.model_version

        # trained on another encoder: a valid artifact (the command takes it), refused by the replica
        other = artifact.save(
            tmp_path / "other", replace(shipped, version="heads-other"),
            {**shipped.manifest, "embedding_model_sha256": "f" * 64},
        )  # fmt: skip
        assert await cli("promote", "--artifact", str(other), "--nats-url", url, "--wait", "3") == 1
        out = capsys.readouterr().out
        assert "cl-first: still heads-promoted" in out and "trained on encoder ffffffffffff" in out
        assert metric(port, 'switchyard_classifier_heads_refused_total{reason="incompatible"}') == 1
        refused = await until(js, lambda r: r.refused is not None)
        assert refused.model_version == on_good.model_version

        # corrupt on the bus: the weights stored under their name hold other bytes
        files = promotion.read_folder(
            artifact.save(tmp_path / "c", tilted(tilted(shipped, "x"), "heads-c"), {**shipped.manifest})
        )
        damaged = bytearray(files.weights)
        damaged[len(damaged) // 2] ^= 0x01

        async def once(data: bytes) -> AsyncIterator[bytes]:
            yield data

        name_json, name_npz = files.ref.names()
        await objects.write(js, subjects.OBJ_CLASSIFIER_HEADS, name_json, once(files.manifest))
        await objects.write(js, subjects.OBJ_CLASSIFIER_HEADS, name_npz, once(bytes(damaged)))
        await promotion.set_live(
            js, lambda cur: promotion.promoted_after(cur, files.ref, at=datetime.now(UTC))
        )
        await until(js, lambda r: r.refused is not None and "heads-c" in r.refused and "corrupt" in r.refused)
        assert metric(port, 'switchyard_classifier_heads_refused_total{reason="corrupt"}') == 1
        log = (tmp_path / "cl-first.log").read_text()
        assert "promoted classifier heads refused (corrupt), still classifying with heads-promoted" in log

        # one command back, twice: past the refused heads to the good ones, then to the shipped ones
        assert await cli("rollback", "--nats-url", url) == 0
        assert await cli("rollback", "--nats-url", url, "--wait", "10") == 0
        assert "rolled back: heads-promoted in force" in capsys.readouterr().out
        assert await cli("rollback", "--nats-url", url, "--wait", "10") == 0
        assert (
            await until(js, lambda r: r.heads_version == shipped.version)
        ).model_version == old.model_version
        assert metric(port, "switchyard_classifier_heads_swaps_total") == 2
        assert await cli("rollback", "--nats-url", url) == 2  # the baseline: nothing before it
        assert "nothing before it to roll back to" in capsys.readouterr().err

        # promoted again; a replica started afterwards, alone, classifies with it from its first task
        assert await cli("promote", "--artifact", str(promoted_dir), "--nats-url", url, "--wait", "10") == 0
        first.stop()
        status = await started(late, js)
        assert status.heads_version == "heads-promoted" and status.refused is None
        assert await classify(task(2)) == status.model_version
        assert await cli("heads", "--nats-url", url) == 0
        shown = capsys.readouterr().out
        assert "in force: heads-promoted" in shown and "cl-late: heads-promoted+" in shown
    finally:
        first.stop()
        late.stop()


async def test_a_promotion_after_the_bus_restarted_arrives_within_the_poll(
    nats_server: NatsServer, tmp_path: Path, promoted_dir: Path
) -> None:
    """The replica's watch does not survive a nats-server restart; the key is read every poll_s (2 s here)
    all the same, so a promotion made afterwards still arrives within seconds."""
    url = nats_server.url
    one = replica(url, "cl-one", tmp_path)
    try:
        nc = await nats.connect(url)
        await started(one, nc.jetstream())
        await nc.close()
        nats_server.stop(kill=True)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats_server.start)
        await asyncio.sleep(1.0)  # the replica reconnects (nats-py: every 2 s)
        nc = await nats.connect(url)
        js = nc.jetstream()
        assert await cli("promote", "--artifact", str(promoted_dir), "--nats-url", url) == 0
        written = time.monotonic()
        await until(js, lambda r: r.heads_version == "heads-promoted", timeout=15)
        first = time.monotonic() - written
        assert first < 2 + 3  # the poll, and the reconnect's slack
        # that change came by the poll: the replica watches anew, and the next one comes at once
        assert await cli("rollback", "--nats-url", url) == 0
        written = time.monotonic()
        await until(js, lambda r: r.heads_version != "heads-promoted", timeout=15)
        second = time.monotonic() - written
        print(f"\nafter a nats-server restart: {first:.2f} s, then (watched anew) {second:.2f} s")
        assert second < 1.0
        await nc.close()
    finally:
        one.stop()
