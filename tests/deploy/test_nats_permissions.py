"""deploy/nats/integrator-permissions.conf on a real nats-server: the services' user does everything through
the usual code (a broker connecting with the credentials in SWITCHYARD_NATS_URL), and the integrator's user
submits a task and hears its result, but can forge no other event, call no RPC, touch no KV bucket or
dead letter, and hear no one else's replies."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest

from switchyard.cli.processes import NATS_GOMAXPROCS, free_port, nats_server_binary
from switchyard.common import bus, subjects
from switchyard.common.envelope import encode
from switchyard.common.events import TaskCompleted, Usage
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"SWITCHYARD_NATS_PASSWORD": "services-secret", "INTEGRATOR_NATS_PASSWORD": "integrator-secret"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    shutil.copy(ROOT / "deploy/nats/integrator-permissions.conf", tmp_path)
    port, monitor = free_port(), free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n"
        f"jetstream {{ store_dir: {tmp_path / 'js'} }}\ninclude ./integrator-permissions.conf\n"
    )
    with open(tmp_path / "nats.log", "wb") as log:
        proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **PASSWORDS, "GOMAXPROCS": NATS_GOMAXPROCS},
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "nats.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "nats-server not ready"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_integrator_submits_and_hears_results_and_can_do_nothing_else(server: int) -> None:
    services = bus.make_broker(f"nats://switchyard:services-secret@127.0.0.1:{server}", name="perm-test")
    await services.connect()
    denied: list[str] = []

    async def on_error(exc: Exception) -> None:
        denied.append(str(exc))

    outsider = await nats.connect(
        f"nats://127.0.0.1:{server}",
        user="integrator",
        password="integrator-secret",
        inbox_prefix="_INBOX_integrator",
        error_cb=on_error,
    )
    try:
        js = bus.jetstream(services)
        await bus.ensure_streams(js)
        publisher = bus.EventPublisher(js, source="switchyard/executor")
        theirs = outsider.jetstream()

        results = await outsider.subscribe(subjects.result_subject("t-perm"))
        task_id, task = encode(hello_task("t-perm"), source="urn:other", tenant_id="acme")
        ack = await theirs.publish(subjects.TASK_SUBMITTED, task, headers={"Nats-Msg-Id": task_id})
        assert ack.stream == subjects.STREAM_EVENTS and not ack.duplicate
        answer = TaskCompleted(
            task_id="t-perm",
            tenant_id="acme",
            model="m",
            provider="p",
            tier="fast",
            content="hi",
            finish_reason="stop",
            usage=Usage(prompt_tokens=1, completion_tokens=1),
            attempts=1,
            latency_ms=1.0,
            completed_at=datetime.now(UTC),
        )
        await publisher.publish(answer, subject=subjects.result_subject("t-perm"), tenant_id="acme")
        assert (await results.next_msg(timeout=5)).subject == subjects.result_subject("t-perm")

        stored = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
        _, forged = encode(answer, source="urn:other", tenant_id="acme")
        await outsider.publish(subjects.result_subject("t-perm"), forged)  # a forged result
        await outsider.publish(f"$KV.{subjects.KV_SPEND}.acme", b"0")  # a spend counter reset
        with pytest.raises(nats.errors.TimeoutError):  # an RPC: the request never reaches billing
            await outsider.request(
                f"{subjects.BILLING_RPC_PREFIX}.usage", b'{"tenant_id": "acme"}', timeout=1
            )
        for subject in ("_INBOX.>", f"{subjects.DLQ_PREFIX}.>", f"{subjects.BILLING_RPC_PREFIX}.>"):
            await outsider.subscribe(subject)  # others' replies, the dead letters, billing's RPC requests
        await outsider.flush()
        await asyncio.sleep(0.5)
        assert (await js.stream_info(subjects.STREAM_EVENTS)).state.messages == stored
        joined = "\n".join(denied)
        for what in (
            f'Publish to "{subjects.result_subject("t-perm")}"',
            f'Publish to "$KV.{subjects.KV_SPEND}.acme"',
            f'Publish to "{subjects.BILLING_RPC_PREFIX}.usage"',
            'Subscription to "_INBOX.>"',
            f'Subscription to "{subjects.DLQ_PREFIX}.>"',
            f'Subscription to "{subjects.BILLING_RPC_PREFIX}.>"',
        ):
            assert f"permissions violation for {what}".lower() in joined.lower(), joined
    finally:
        await outsider.close()
        await services.stop()
