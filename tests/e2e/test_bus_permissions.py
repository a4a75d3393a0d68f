"""The embedded run's NATS users may do what their service does and no more (bus_permissions.py): the
executor's user cannot forge a routed task or an erasure, nor create or reconfigure a stream (a republish
into a subject it may not publish); the router's cannot put classifier heads in force; a service cannot
hear another's replies. Each of these succeeded before, when every user could do everything. The
operator (the CLI) still can."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client
from nats.js import api

from switchyard.cli import nats_users
from switchyard.common import subjects
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
DENIED_WAIT_S = 2.0


class User:
    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc, self.errors = nc, errors

    async def refused(self, action: Callable[[], object]) -> str:
        """The permissions violation `action` met (its request then gets no answer)."""
        before = len(self.errors)
        try:
            async with asyncio.timeout(DENIED_WAIT_S + 1):
                await action()  # type: ignore[misc]
        except (TimeoutError, nats.errors.Error):
            pass
        await asyncio.sleep(0.2)
        found = [e for e in self.errors[before:] if "permissions violation" in e]
        assert found, f"not refused: {self.errors[before:]}"
        return found[0]


@pytest.fixture
async def connect(stack: RunningStack) -> AsyncIterator[Callable[[str], object]]:
    opened: list[Client] = []

    async def as_user(user: str) -> User:
        errors: list[str] = []

        async def collect(exc: Exception) -> None:
            errors.append(str(exc))

        who = nats_users.embedded_credentials(stack.var_dir, user)
        assert who is not None
        nc = await nats.connect(stack.bare_nats_url, error_cb=collect, **who.connect_options())  # type: ignore[arg-type]
        opened.append(nc)
        return User(nc, errors)

    yield as_user
    for nc in opened:
        await nc.close()


async def _count(stack: RunningStack, subject: str) -> int:
    nc = await nats.connect(stack.nats_url)
    try:
        info = await nc.jetstream().stream_info(subjects.STREAM_EVENTS, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_the_executor_cannot_forge_a_routed_task_or_an_erasure(stack: RunningStack, connect) -> None:  # type: ignore[no-untyped-def]
    executor: User = await connect("executor")
    js = executor.nc.jetstream()
    for subject in (subjects.TASK_ROUTED, subjects.ADMIN_ACTION, subjects.TASK_SUBMITTED):
        stored = await _count(stack, subject)
        found = await executor.refused(lambda s=subject: js.publish(s, b"{}", timeout=DENIED_WAIT_S))
        assert subject in found
        assert await _count(stack, subject) == stored


async def test_the_executor_cannot_create_or_reconfigure_a_stream(stack: RunningStack, connect) -> None:  # type: ignore[no-untyped-def]
    executor: User = await connect("executor")
    js = executor.nc.jetstream()
    mapping = api.StreamConfig(
        name="FORGE",
        subjects=["forge.>"],
        republish=api.RePublish(src="forge.>", dest=subjects.TASK_ROUTED),
    )
    assert "$js.api.stream.create.forge" in (await executor.refused(lambda: js.add_stream(mapping))).lower()
    info = await js.stream_info(subjects.STREAM_EVENTS)  # it may read a stream's configuration
    changed = info.config
    changed.subjects = [*(changed.subjects or []), "forge.>"]
    assert "stream.update" in (await executor.refused(lambda: js.update_stream(changed))).lower()
    operator = await nats.connect(stack.nats_url)
    try:
        names = {i.config.name for i in await operator.jetstream().streams_info()}
        kept = (await operator.jetstream().stream_info(subjects.STREAM_EVENTS)).config.subjects
    finally:
        await operator.close()
    assert "FORGE" not in names
    assert "forge.>" not in (kept or [])


async def test_the_router_cannot_put_classifier_heads_in_force(stack: RunningStack, connect) -> None:  # type: ignore[no-untyped-def]
    router: User = await connect("router")
    js = router.nc.jetstream()
    found = await router.refused(
        lambda: js.publish(f"$KV.{subjects.KV_CLASSIFIER_HEADS}.live", b"{}", timeout=DENIED_WAIT_S)
    )
    assert subjects.KV_CLASSIFIER_HEADS in found
    found = await router.refused(
        lambda: js.publish(f"$O.{subjects.OBJ_CLASSIFIER_HEADS}.C.x", b"weights", timeout=DENIED_WAIT_S)
    )
    assert subjects.OBJ_CLASSIFIER_HEADS in found


async def test_a_service_cannot_hear_another_services_replies(connect) -> None:  # type: ignore[no-untyped-def]
    executor: User = await connect("executor")

    async def listen() -> None:
        await executor.nc.subscribe("_INBOX_gateway.>")
        await executor.nc.flush()

    assert "_inbox_gateway" in (await executor.refused(listen)).lower()


def test_the_operators_commands_still_work(stack: RunningStack) -> None:
    from switchyard.classifier import artifact

    promoted = stack.cli(
        "classifier", "promote", "--artifact", str(artifact.default_dir()), "--note", "perms"
    )
    assert promoted.returncode == 0, promoted.stderr
    heads = stack.cli("classifier", "heads", "--json")  # the replica took them: it may read the store
    assert heads.returncode == 0 and "perms" in heads.stdout, heads.stderr
    for command in (("tenants", "list"), ("dlq", "list")):
        done = stack.cli(*command)
        assert done.returncode == 0, (command, done.stderr)
