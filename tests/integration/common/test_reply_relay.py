"""No user may relay a publish through a reply subject. With nats-server's `allow_responses`, a user may
publish once to the reply subject of any message it receives; a user that may both publish and hear a
subject (the gateway: results; every service: its own ping, which its health check sends) could send
itself a message whose reply subject is one it may not publish (`switchyard.task.routed`: the router's
alone) and answer it there, so the event was stored as if the router had routed it. The services answer
requests on their callers' inboxes instead (`_INBOX_gateway`, `_INBOX_operator`, their own), which each
may publish to and nothing else of the kind."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

from switchyard.common import subjects
from switchyard.common.healthcheck import ping_problem
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration
FORGED = b'{"forged": "routed"}'


@pytest.mark.parametrize(
    ("user", "heard", "sent"),
    [
        ("executor", subjects.ping_subject("executor"), subjects.ping_subject("executor")),
        ("gateway", f"{subjects.RESULT_PREFIX}.>", subjects.result_subject("acme", "relay")),
    ],
)
async def test_a_user_cannot_publish_what_it_may_not_through_a_reply_subject(
    guarded: GuardedBus, user: str, heard: str, sent: str
) -> None:
    errors: list[str] = []
    listener = await guarded.connect(user, errors)
    sender = await guarded.connect(user, errors)
    operator = await guarded.connect("operator")
    try:
        js = operator.jetstream()

        async def relay(msg: Msg) -> None:
            if msg.reply:
                await listener.publish(msg.reply, FORGED)

        await listener.subscribe(heard, cb=relay)
        await listener.flush()
        await sender.publish(sent, b"{}", reply=subjects.TASK_ROUTED)
        await sender.flush()
        refusal = f'publish to "{subjects.TASK_ROUTED}"'

        def refused() -> bool:
            """Told to the relaying client, or written in the server's log (what the server did, when the
            client's error callback is slow to run under load: CI once waited 20 s for it in vain)."""
            told = any(refusal in e for e in errors)
            return told or any(subjects.TASK_ROUTED in line for line in guarded.violations())

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30  # the refusal comes back asynchronously
        resend_at = loop.time() + 5
        while not refused():
            assert loop.time() < deadline, (errors, guarded.violations())
            if loop.time() > resend_at:
                # Under load a run once saw neither the client's error nor the server's log line in 30 s
                # (cause not found; 1 run in 4 of the gateway case on 2026-12-07): send again, so each
                # relay that does happen must still be refused, and none may be stored (below).
                await sender.publish(sent, b"{}", reply=subjects.TASK_ROUTED)
                resend_at = loop.time() + 5
            await asyncio.sleep(0.05)
        await listener.flush()
        stored = []  # whatever the stream holds as routed: never the relayed payload
        routed = await js.subscribe(subjects.TASK_ROUTED, ordered_consumer=True)
        while True:
            try:
                stored.append((await routed.next_msg(timeout=0.5)).data)
            except nats.errors.TimeoutError:
                break
        # (a publish into the stream with that reply has the server's ack stored there: its JSON, never
        # the sender's, which the stream's readers dead-letter as no event)
        assert FORGED not in stored and all(b'"stream"' in data for data in stored), stored
    finally:
        for nc in (listener, sender, operator):
            await nc.close()


async def test_requests_are_still_answered_on_the_callers_inboxes(guarded: GuardedBus) -> None:
    """Pings from the operator (the CLI), the gateway (`/readyz?strict`) and the service's own health check
    are answered, with no refusal."""
    errors: list[str] = []
    replica = await guarded.connect("router", errors)
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b'{"instance": "router-1", "stopping": false}')

        await replica.subscribe(subjects.ping_subject("router"), cb=answer)
        await replica.flush()
        for caller in ("operator", "gateway", "router"):
            probe = await guarded.connect(caller, errors)
            try:
                assert await ping_problem(probe, "router", instance="router-1", timeout_s=5) is None, caller
            finally:
                await probe.close()
        assert errors == [], errors
    finally:
        await replica.close()
    guarded.assert_clean()
