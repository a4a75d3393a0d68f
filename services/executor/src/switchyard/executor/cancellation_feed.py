"""Every cancellation and timed-out event, from the stream, for one executor replica.

A JetStream ordered consumer per replica (not a shared durable one: every replica must hear every event,
since any of them may hold the task), over the two subjects only, starting `remember_s` back: a replica
that starts replays what it must remember, and after a reconnect the consumer resumes after the last
message it delivered, so nothing published meanwhile is missed. It is cheap: ephemeral, in memory, no acks,
flow-controlled by the server.

Core NATS subscriptions, which this replaces, lost what was published while a replica was disconnected or
restarting: the task then ran to its end and was paid for although nobody wanted its answer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from switchyard.common import bus, bus_guard, subjects
from switchyard.executor.cancellations import Cancellations

log = logging.getLogger(__name__)

# The server sends a heartbeat when it has nothing else to send; two missed ones (a server restarted, its
# in-memory consumer gone) make nats-py recreate the consumer from the next message. One a second per
# replica costs nothing, and bounds the time a restarted server's cancellations wait to about 2 s.
HEARTBEAT_S = 1.0
# How long a starting replica waits for its replay before it takes tasks (a replay of a busy window is
# thousands of small messages: well under a second). Past it, the rest still counts as it arrives: a task
# already running is stopped then.
CATCH_UP_S = 10.0


async def follow(
    js: JetStreamContext,
    cancellations: Cancellations,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    catch_up_s: float = CATCH_UP_S,
) -> JetStreamContext.PushSubscription:
    """Subscribes `cancellations` to the stream's cancellations from `remember_s` ago, and returns once
    those already stored are heard (so a task cancelled before this replica started is skipped, not run).
    Unsubscribe the returned subscription to stop."""
    heard = 0
    replayed = asyncio.Event()
    replay_size: int | None = None

    async def on_message(msg: Msg) -> None:
        nonlocal heard
        meta = msg.metadata
        if bus_guard.stored_answer(msg.headers):  # no publisher's: `bus_guard`
            log.warning("skipped a cancellation on %s: %s", msg.subject, bus.NOT_PUBLISHED)
        else:
            stored_at = meta.timestamp if meta is not None else None
            await cancellations.on_message(msg.data, subject=msg.subject, stored_at=stored_at)
        heard += 1
        if replay_size is not None and heard >= replay_size:
            replayed.set()

    since = datetime.now(UTC) - timedelta(seconds=cancellations.remember_s)
    config = api.ConsumerConfig(
        # and a tenant-scoped system's (`task.cancelled.<token>`), counted only for its own tenant's task
        filter_subjects=[subjects.TASK_CANCELLED, f"{subjects.TASK_CANCELLED}.*", subjects.TASK_TIMED_OUT],
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
    )
    sub = await js.subscribe(
        subjects.TASK_CANCELLED,
        stream=subjects.STREAM_EVENTS,
        cb=on_message,
        ordered_consumer=True,
        idle_heartbeat=heartbeat_s,
        config=config,
    )
    # nats-py (2.16) recreates an ordered consumer in this same config object, set to start at the
    # sequence after the last one it delivered; the start time left in it makes the server refuse that
    # ("deliver by start sequence, but optional start time is also set", 10094), and the consumer would
    # never resume after a server restart. Its first consumer exists now: the start time has done its part.
    # (One recreated before any message was delivered starts at sequence 1: the stream's cancellations of
    # the last 7 days are read once, and those older than `remember_s` ignored.)
    config.opt_start_time = None

    # What the replay holds: delivered + pending, in one reply, so the sum is right whichever messages
    # were handled before the reply came.
    info = await sub.consumer_info()
    replay_size = (info.delivered.consumer_seq if info.delivered else 0) + (info.num_pending or 0)
    if heard >= replay_size:
        replayed.set()
    try:
        await asyncio.wait_for(replayed.wait(), catch_up_s)
    except TimeoutError:
        log.warning(
            "heard %d of the %d cancellations of the last %.0f s before taking tasks; the rest count as"
            " they come",
            heard,
            replay_size,
            cancellations.remember_s,
        )
    else:
        log.info("hearing cancellations (%d replayed from the last %.0f s)", heard, cancellations.remember_s)
    return sub
