"""A durable JetStream pull consumer on plain nats-py: ask the server for messages, run up to `max_workers`
handlers, ask again as handlers finish.

`bus.subscribe` registers one per consumer of a service; `bus.start_consumers` starts them once the broker
is connected and `bus.stop_consumers` stops them before it disconnects. It replaces FastStream's pull
subscriber on the event path, which cost ~0.3-0.5 ms of CPU per message on this machine (its dependency
injection resolves the message argument in a worker thread, every time, plus middlewares and two log
lines). FastStream still owns the connection and the request/reply handlers (pings, ledger proofs).

It sends its own pull requests (`$JS.API.CONSUMER.MSG.NEXT`) rather than nats-py's `fetch`, and hands
each message to a handler the moment it arrives. `fetch(n)` returns only once its batch is full or its
request ends; when a stale status from an earlier request sends it on to its second, lingering request
(nats-py 2.16's code path; not caught in the act here), a message that has arrived can wait in the client
for the rest of the batch, up to the fetch timeout (5 s).
Each request here has its own reply subject (`<inbox>.<n>`, where the server's statuses arrive), so a
late status from an earlier request cannot end the current one, and at most `max(batch_size,
max_workers)` messages are asked for or in hand at once (a late message from a request given up as lost
can pass that bound by the few it brings; `max_workers` still bounds the handlers).

With `gather_s` (consumers off the request path whose handlers batch their writes anyway: audit,
billing, routing statistics) the loop asks for one message with a waiting request and, once it came,
waits `gather_s` and takes what piled up meanwhile with one `no_wait` request, again and again while
messages keep coming (at once, without the wait, after a request that came back full). A trickle of events
then wakes the process once per `gather_s` instead of once per event; when a gathering request finds
nothing, the loop goes back to one waiting request, so an idle consumer costs nothing more than before.

Acknowledgement stays with the caller's `on_message` (ack, nak with delay, term): this loop only asks,
bounds concurrency and survives reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from switchyard.common.background import Background, cancel
from switchyard.common.config import STOP_GRACE_S

log = logging.getLogger(__name__)

OnMessage = Callable[[Msg], Awaitable[None]]
REQUEST_EXPIRES_S = 5.0  # a pull request waits this long on the server for messages, then ends (408)
LOST_AFTER_S = 2.0  # no end of a request this long after it expired: lost (reconnect), ask again
RETRY_DELAY_S = 1.0
_STATUS = api.Header.STATUS.value
_ENDS_REQUEST = (api.StatusCode.NO_MESSAGES.value, api.StatusCode.REQUEST_TIMEOUT.value)


class PullConsumer:
    def __init__(
        self,
        *,
        stream: str,
        subject: str,
        durable: str,
        config: api.ConsumerConfig,
        on_message: OnMessage,
        max_workers: int,
        batch_size: int,
        gather_s: float = 0.0,
    ) -> None:
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self._config = config
        self._on_message = on_message
        self._max_workers = max(1, max_workers)
        self._batch_size = max(1, batch_size)
        self._limit = max(self._batch_size, self._max_workers)  # asked for, in hand or running
        self._gather_s = max(0.0, gather_s)
        self._workers = asyncio.Semaphore(self._max_workers)
        self._loop_task: asyncio.Task[None] | None = None
        self._inbox_sub: Subscription | None = None
        self._running = Background()
        self._stopping = False
        self._in_hand = 0  # delivered and not yet settled
        self._room = asyncio.Event()  # set whenever a message is settled
        self._request = 0  # the current pull request's number (its reply subject's last token)
        self._asked = 0  # messages the current request may still deliver
        self._ended = asyncio.Event()  # the current request delivered all it asked for, or ended
        self._trouble: str | None = None  # an unexpected status ended the current request

    async def start(self, js: JetStreamContext) -> None:
        if self._loop_task is not None:
            return
        await self._ensure_consumer(js)
        nc: Client = js._nc  # the broker's connection: pull requests and their replies go over it
        inbox = nc.new_inbox()
        self._stopping = False
        self._inbox_sub = await nc.subscribe(f"{inbox}.*", cb=self._on_delivery)
        self._loop_task = asyncio.create_task(self._pull_loop(nc, inbox), name=f"consumer-{self.durable}")

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        """Creates the durable consumer if it does not exist (what `js.pull_subscribe` did), and brings an
        existing one's delivery limit to this release's (a consumer that now rides out database outages,
        `bus.outage_deliveries`): the server would otherwise stop redelivering at the old limit."""
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = None
        if info is not None and info.config.max_deliver == self._config.max_deliver:
            return
        config = self._config
        if not config.filter_subjects:
            config.filter_subject = self.subject
        config.name = self.durable
        config.durable_name = self.durable
        await js.add_consumer(self.stream, config=config)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stops asking, lets running handlers finish (up to `grace_s`), then cancels the rest: an
        unacked message is redelivered after `ack_wait`, and every handler is idempotent."""
        if self._loop_task is None:
            return
        self._stopping = True
        await cancel(self._loop_task)
        self._loop_task = None
        if self._inbox_sub is not None:
            with contextlib.suppress(Exception):
                await self._inbox_sub.unsubscribe()
            self._inbox_sub = None
        await self._running.stop(grace_s)

    async def _pull_loop(self, nc: Client, inbox: str) -> None:
        subject = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
        expires_ns = int(REQUEST_EXPIRES_S * 1_000_000_000)
        gathering = False  # the next request takes what is there (no_wait), after `pause` seconds
        pause = 0.0
        while True:
            if pause:
                await asyncio.sleep(pause)
            while self._in_hand >= self._limit:
                self._room.clear()
                await self._room.wait()
            room = min(self._batch_size, self._limit - self._in_hand)
            if self._gather_s and not gathering:
                room = 1  # wait for one message; the rest of a burst is gathered after it
            self._request += 1
            self._asked = room
            self._trouble = None
            self._ended.clear()
            try:
                ask: dict[str, object] = {"batch": room}
                if gathering:
                    ask["no_wait"] = True  # without `expires`: the server answers at once
                else:
                    ask["expires"] = expires_ns
                await nc.publish(subject, orjson.dumps(ask), reply=f"{inbox}.{self._request}")
            except Exception as exc:  # closed or not yet reconnected: try again
                log.warning("pull request to %s failed (%s); retrying", self.durable, exc)
                gathering, pause = False, RETRY_DELAY_S
                continue
            try:
                async with asyncio.timeout(REQUEST_EXPIRES_S + LOST_AFTER_S):
                    await self._ended.wait()
            except TimeoutError:  # the request or its end was lost (a reconnect): ask again
                gathering, pause = False, 0.0
                continue
            if self._trouble is not None:
                log.warning("pull request to %s refused (%s); retrying", self.durable, self._trouble)
                gathering, pause = False, RETRY_DELAY_S
                continue
            delivered = room - max(self._asked, 0)
            if self._gather_s:
                gathering = delivered > 0
                full = delivered == room and room > 1  # more may be waiting: ask again at once
                pause = self._gather_s if delivered and not full else 0.0
            else:
                pause = 0.0

    async def _on_delivery(self, msg: Msg) -> None:
        """Runs for everything the server sends the inbox, in order: a message goes to a handler at once; a
        status ends the request it answers (404 nothing left, 408 expired, 409 refused)."""
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:  # a message keeps its own subject: count it against the current request
            self._asked -= 1
            if self._asked <= 0:
                self._ended.set()
            self._dispatch(msg)
        elif status == api.StatusCode.CONTROL_MESSAGE.value:
            pass  # an idle heartbeat (not asked for)
        elif msg.subject.rpartition(".")[2] == str(self._request):  # statuses come on the reply subject
            if status not in _ENDS_REQUEST:
                description = msg.headers.get(api.Header.DESCRIPTION.value, "") if msg.headers else ""
                self._trouble = f"{status} {description}".strip()
            self._ended.set()

    def _dispatch(self, msg: Msg) -> None:
        if self._stopping:  # give it back at once, for another replica or the next start
            self._running.spawn(_nak(msg))
        else:
            self._in_hand += 1
            self._running.spawn(self._handle(msg))

    async def _handle(self, msg: Msg) -> None:
        try:
            async with self._workers:
                await self._on_message(msg)
        except Exception:  # on_message settles every message itself; this is a bug, logged not raised
            log.exception("unhandled error on %s", self.durable)
        finally:
            self._in_hand -= 1
            self._room.set()


async def _nak(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.nak()
