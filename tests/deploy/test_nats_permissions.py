"""The bus of docker compose and Kubernetes on a real nats-server: deploy/nats/nats.conf with the users'
file `switchyard bus credentials --integrator integrator --tenant acme` writes. Each service logs in as
itself with its own password file (bcrypt-checked by the server) and is held to its rights; `operator`
provisions the stores; and the integrator's user submits acme's task and hears its result, but can act for
no other tenant nor hear another's results or chunks, forge no other event, call no RPC, touch no KV
bucket or dead letter, and hear no one else's replies."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig

from switchyard.cli import bus_credentials, bus_stores
from switchyard.cli.bus_permissions import Integrator
from switchyard.cli.nats_users import USERS
from switchyard.cli.processes import NATS_GOMAXPROCS, free_port, nats_server_binary
from switchyard.common import bus, subjects
from switchyard.common.bus_auth import NatsCredentials, read_password_file
from switchyard.common.envelope import encode
from switchyard.common.events import TaskCompleted, Usage
from tests.support.tasks import completed, hello_task

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _who(folder: Path, user: str) -> NatsCredentials:
    return NatsCredentials(
        user=user, password=read_password_file(bus_credentials.password_file(folder, user))
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """deploy/nats/nats.conf as compose runs it (its port and monitor overridden on the command line, its
    store in `tmp_path`), beside the users' file; the port and the credentials' folder."""
    folder = tmp_path / "credentials"
    bus_credentials.write_credentials(folder, integrators=[Integrator("integrator", ("acme",))])
    conf = (ROOT / "deploy/nats/nats.conf").read_text()
    assert "store_dir: /data" in conf
    (tmp_path / "nats.conf").write_text(conf.replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}"))
    shutil.copy(folder / bus_credentials.USERS_CONF, tmp_path)
    port, monitor = free_port(), free_port()
    command = [nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-a", "127.0.0.1", "-p", str(port)]
    command += ["-m", str(monitor)]
    with open(tmp_path / "nats.log", "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GOMAXPROCS": NATS_GOMAXPROCS}
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
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(10)


async def test_each_user_logs_in_with_its_own_password_and_only_operator_makes_streams(
    server: tuple[int, Path],
) -> None:
    port, folder = server
    url = f"nats://127.0.0.1:{port}"
    conf = (folder / bus_credentials.USERS_CONF).read_text()
    for user in USERS:
        password = _who(folder, user).password.get_secret_value()
        assert password not in conf and f'"{user}", password: "$2a$' in conf  # the server holds hashes
    for user in USERS:  # each with its own password, as a service connects (bus.make_broker)
        broker = bus.make_broker(url, name=user, credentials=_who(folder, user))
        await broker.connect()
        await broker.stop()
    for user, password_of in (("gateway", "executor"), ("nobody", "operator")):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            wrong = _who(folder, password_of).password.get_secret_value()
            await nats.connect(url, user=user, password=wrong, allow_reconnect=False)
    denied: list[str] = []

    async def on_error(exc: Exception) -> None:
        denied.append(str(exc))

    executor = await nats.connect(url, error_cb=on_error, **_who(folder, "executor").connect_options())
    operator = await nats.connect(url, **_who(folder, "operator").connect_options())
    try:
        with pytest.raises(nats.errors.TimeoutError):  # a service may not make a stream
            await executor.jetstream(timeout=1).add_stream(name="FORGED", subjects=[subjects.TASK_ROUTED])
        made = await bus_stores.provision(operator.jetstream())
        assert subjects.STREAM_EVENTS in made and len(made) == len(bus_stores.stores())
        await executor.publish(subjects.TASK_ROUTED, b"{}")  # only the router routes
        await executor.flush()
        await asyncio.sleep(0.3)
        info = await operator.jetstream().stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 0
        joined = "\n".join(denied).lower()
        assert f'permissions violation for publish to "{subjects.TASK_ROUTED}"' in joined, joined
    finally:
        await executor.close()
        await operator.close()


async def test_the_integrator_submits_and_hears_results_and_can_do_nothing_else(
    server: tuple[int, Path],
) -> None:
    port, folder = server
    url = f"nats://127.0.0.1:{port}"
    operator = await nats.connect(url, **_who(folder, "operator").connect_options())
    services = bus.make_broker(url, name="executor", credentials=_who(folder, "executor"))
    await services.connect()
    denied: list[str] = []

    async def on_error(exc: Exception) -> None:
        denied.append(str(exc))

    outsider = await nats.connect(url, error_cb=on_error, **_who(folder, "integrator").connect_options())
    try:
        await bus_stores.provision(operator.jetstream())
        js = bus.jetstream(services)
        publisher = bus.EventPublisher(js, source="switchyard/executor")
        theirs = outsider.jetstream()

        results = await outsider.subscribe(subjects.result_subject("acme", "t-perm"))
        task_id, task = encode(hello_task("t-perm"), source="urn:other", tenant_id="acme")
        mine = subjects.scoped(subjects.TASK_SUBMITTED, "acme")
        ack = await theirs.publish(mine, task, headers={"Nats-Msg-Id": task_id})
        assert ack.stream == subjects.STREAM_EVENTS and not ack.duplicate
        answer = _answer("acme", "t-perm")
        await publisher.publish(answer, subject=subjects.result_subject("acme", "t-perm"), tenant_id="acme")
        assert (await results.next_msg(timeout=5)).subject == subjects.result_subject("acme", "t-perm")

        stored = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
        _, forged = encode(answer, source="urn:other", tenant_id="acme")
        await outsider.publish(subjects.result_subject("acme", "t-perm"), forged)  # a forged result
        await outsider.publish(f"$KV.{subjects.KV_SPEND}.acme", b"0")  # a spend counter reset
        with pytest.raises(nats.errors.TimeoutError):  # an RPC: the request never reaches billing
            await outsider.request(
                f"{subjects.BILLING_RPC_PREFIX}.usage", b'{"tenant_id": "acme"}', timeout=1
            )
        for name, on in (
            ("mine", f"{subjects.RESULT_PREFIX}.>"),  # a consumer not its own
            ("integrator-all", subjects.RESULT_ALL),  # an all-tenant integrator's
            (subjects.results_consumer("integrator", "acme").durable, subjects.RESULT_ALL),  # re-pointed
            (subjects.results_consumer("integrator", "acme").durable, subjects.TASK_SUBMITTED),
        ):
            with pytest.raises(nats.errors.TimeoutError):
                config = ConsumerConfig(name=name, durable_name=name, filter_subject=on)
                await outsider.jetstream(timeout=1).add_consumer(subjects.STREAM_EVENTS, config=config)
        # another tenant's task, cancellation or rating, or one of any tenant on the bare subjects
        others = [subjects.scoped(subject, "globex") for subject in subjects.SCOPED]
        for subject in (*others, *subjects.SCOPED):
            await outsider.publish(subject, task)
        # another tenant's results and chunks, or every tenant's
        theirs_too = (subjects.result_subject("globex", "t-perm"), subjects.chunk_subject("globex", "t-perm"))
        for subject in (*theirs_too, subjects.RESULT_ALL, f"{subjects.CHUNK_PREFIX}.>"):
            await outsider.subscribe(subject)
        for subject in ("_INBOX.>", f"{subjects.DLQ_PREFIX}.>", f"{subjects.BILLING_RPC_PREFIX}.>"):
            await outsider.subscribe(subject)  # others' replies, the dead letters, billing's RPC requests
        await outsider.flush()
        await asyncio.sleep(0.5)
        assert (await js.stream_info(subjects.STREAM_EVENTS)).state.messages == stored
        joined = "\n".join(denied)
        for what in (
            f'Publish to "{subjects.result_subject("acme", "t-perm")}"',
            f'Publish to "$KV.{subjects.KV_SPEND}.acme"',
            f'Publish to "{subjects.BILLING_RPC_PREFIX}.usage"',
            'Subscription to "_INBOX.>"',
            f'Subscription to "{subjects.DLQ_PREFIX}.>"',
            f'Subscription to "{subjects.BILLING_RPC_PREFIX}.>"',
            *(f'Publish to "{subject}"' for subject in (*others, *subjects.SCOPED)),
            *(f'Subscription to "{subject}"' for subject in theirs_too),
            f'Subscription to "{subjects.RESULT_ALL}"',
            f'Subscription to "{subjects.CHUNK_PREFIX}.>"',
        ):
            assert f"permissions violation for {what}".lower() in joined.lower(), joined
    finally:
        await outsider.close()
        await services.stop()
        await operator.close()


def _answer(tenant_id: str, task_id: str) -> TaskCompleted:
    """A task's answer, as an executor publishes it."""
    usage = Usage(prompt_tokens=1, completion_tokens=1)
    return completed(task_id, tenant_id, content="hi", model="m", provider="p", usage=usage)


async def _results_of(client: Any, consumer: subjects.Consumer, inbox_prefix: str) -> Any:
    """The integrator's own consumer, as nats-py binds it (made the first time), replies on its inbox."""
    return await client.jetstream().pull_subscribe(
        consumer.filter_subject,
        durable=consumer.durable,
        stream=consumer.stream,
        inbox_prefix=f"{inbox_prefix}.".encode(),
    )


async def test_the_integrator_reads_the_results_published_while_it_was_away_from_its_own_consumer(
    server: tuple[int, Path],
) -> None:
    """A result heard on its subject is lost to a system disconnected when it came; its own durable
    consumer on its tenant's stored results keeps it until it is read (and acked)."""
    port, folder = server
    url = f"nats://127.0.0.1:{port}"
    operator = await nats.connect(url, **_who(folder, "operator").connect_options())
    executor = await nats.connect(url, **_who(folder, "executor").connect_options())
    denied: list[str] = []

    async def on_error(exc: Exception) -> None:
        denied.append(str(exc))

    try:
        await bus_stores.provision(operator.jetstream())
        publisher = bus.EventPublisher(executor.jetstream(), source="switchyard/executor")
        who = _who(folder, "integrator")
        mine = subjects.results_consumer("integrator", "acme")
        outsider = await nats.connect(url, error_cb=on_error, **who.connect_options())
        sub = await _results_of(outsider, mine, who.inbox_prefix)
        await outsider.close()  # away: the results below are published meanwhile
        for tenant, task_id in (("acme", "t-away-1"), ("globex", "t-globex"), ("acme", "t-away-2")):
            subject = subjects.result_subject(tenant, task_id)
            await publisher.publish(_answer(tenant, task_id), subject=subject, tenant_id=tenant)
        outsider = await nats.connect(url, error_cb=on_error, **who.connect_options())
        sub = await _results_of(outsider, mine, who.inbox_prefix)
        got = await sub.fetch(5, timeout=3)
        assert [m.subject for m in got] == [
            subjects.result_subject("acme", "t-away-1"),
            subjects.result_subject("acme", "t-away-2"),
        ]  # acme's alone, in order: globex's never reaches it
        for msg in got:
            await msg.ack_sync()  # confirmed: a plain ack is taken by the consumer after the flush
        await outsider.flush()
        info = await operator.jetstream().consumer_info(subjects.STREAM_EVENTS, mine.durable)
        assert info.num_ack_pending == 0 and info.num_pending == 0
        assert denied == []
        await outsider.close()
    finally:
        await executor.close()
        await operator.close()
