"""A service's NATS user reads of the events stream only what its own consumers' filters take (real
nats-server, the embedded run's permissions: `cli/bus_permissions.py`). Billing must not read a
`task.submitted` (a user's prompt), nor the router or the classifier an event outside their filters:
not by a message get (`$JS.API.STREAM.MSG.GET`, whose sequence and subject are in the request's body,
which no permission can restrict: it was granted for the lag gauges until the gauges moved to a consumer
on the service's own filter, `common/lag.py`), not by creating or re-pointing a consumer on another
filter (nats-server 2.10+ changes a consumer's filter on update), and not by touching another service's
durable consumer or its lag consumer. Each refusal is the server's (a publish violation: the request is
never answered)."""

from __future__ import annotations

import json

import nats
import pytest
from nats.aio.client import Client
from nats.js import api

from switchyard.common import lag, metrics, subjects
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration

EVENTS = subjects.STREAM_EVENTS
PROMPT = b'{"prompt": "a user\'s secret prompt"}'
# Per user, an event subject none of its consumers read: billing and the router a submitted task, the
# classifier a result (the answer).
OUTSIDE = {
    "billing": subjects.TASK_SUBMITTED,
    "router": subjects.TASK_SUBMITTED,
    "classifier": subjects.result_subject("acme", "t1"),
}


async def _stored(guarded: GuardedBus, subject: str, body: bytes = PROMPT) -> int:
    """Publishes `subject` into the events stream as `operator`; its sequence."""
    nc = await nats.connect(guarded.operator_url)
    try:
        return (await nc.jetstream().publish(subject, body)).seq
    finally:
        await nc.close()


async def _refused(nc: Client, subject: str, body: dict[str, object] | None = None) -> None:
    """A JetStream API request the server must refuse: it is never answered."""
    with pytest.raises(nats.errors.TimeoutError):
        await nc.request(subject, json.dumps(body or {}).encode(), timeout=0.5)


@pytest.mark.parametrize("user", sorted(OUTSIDE))
async def test_a_message_get_outside_its_consumers_is_refused(guarded: GuardedBus, user: str) -> None:
    seq = await _stored(guarded, OUTSIDE[user])
    errors: list[str] = []
    nc = await guarded.connect(user, errors)
    try:
        js = nc.jetstream()
        impatient = nc.jetstream(timeout=0.5)
        with pytest.raises(nats.errors.TimeoutError):
            await impatient.get_msg(EVENTS, seq=seq)
        with pytest.raises(nats.errors.TimeoutError):  # the oldest of a subject, as the lag gauges read
            await impatient.get_msg(EVENTS, seq=1, subject=OUTSIDE[user], next=True)
        # its own work still works: its lag (a pending event of its own consumer) is read
        mine = lag.consumers_of(user)[0]
        await _own_consumer(guarded, mine, user)
        await _stored(guarded, mine.filter_subject.replace(">", "x"), b"{}")
        await lag.sample(js, mine)
        labels = (mine.stream, mine.durable)
        assert metrics.CONSUMER_PENDING.labels(*labels)._value.get() == 1
        assert metrics.CONSUMER_OLDEST_WAITING_AGE.labels(*labels)._value.get() > 0
    finally:
        await nc.close()
    assert any("permissions violation" in e.lower() for e in errors), errors
    refused = [line for line in guarded.violations() if "STREAM.MSG.GET" in line]
    assert len(refused) == 2 and all(user in line for line in refused), guarded.violations()


async def _own_consumer(guarded: GuardedBus, consumer: subjects.Consumer, user: str | None = None) -> None:
    """The durable consumer as its service makes it (`consumer.PullConsumer`), as `user` (the service's)
    or `operator`."""
    nc = await (guarded.connect(user) if user else nats.connect(guarded.operator_url))
    try:
        config = api.ConsumerConfig(
            name=consumer.durable, durable_name=consumer.durable, filter_subject=consumer.filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
        )  # fmt: skip
        await nc.jetstream().add_consumer(consumer.stream, config=config)
    finally:
        await nc.close()


def _config(name: str, filter_subject: str, *, durable: bool = True) -> dict[str, object]:
    config = api.ConsumerConfig(
        name=name, durable_name=name if durable else None, filter_subject=filter_subject,
        ack_policy=api.AckPolicy.EXPLICIT,
    )  # fmt: skip
    return {"stream_name": EVENTS, "config": config.as_dict()}


async def test_a_user_cannot_point_its_own_consumers_at_other_events(guarded: GuardedBus) -> None:
    """Billing's user may make its durable consumers and its lag consumer on their own filters only: not
    update its `billing` consumer (nor make it anew) to read submitted tasks, by any of the three ways
    the API names a consumer's creation."""
    await _own_consumer(guarded, subjects.BILLING_CONSUMER, "billing")
    nc = await guarded.connect("billing")
    prompts = subjects.TASK_SUBMITTED
    try:
        for name in ("billing", "billing-calls", "lag-billing"):
            await _refused(nc, f"$JS.API.CONSUMER.CREATE.{EVENTS}.{name}.{prompts}", _config(name, prompts))
            await _refused(nc, f"$JS.API.CONSUMER.CREATE.{EVENTS}.{name}", _config(name, prompts))
            await _refused(nc, f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS}.{name}", _config(name, prompts))
        ephemeral = _config("lag-billing", prompts, durable=False)
        await _refused(nc, f"$JS.API.CONSUMER.CREATE.{EVENTS}", ephemeral)
    finally:
        await nc.close()
    operator = await nats.connect(guarded.operator_url)
    try:
        info = await operator.jetstream().consumer_info(EVENTS, "billing")
        assert info.config.filter_subject == subjects.RESULT_ALL
    finally:
        await operator.close()


@pytest.mark.parametrize(
    ("user", "other"),
    [
        # the same filter as one of the user's own consumers: only the name keeps them apart
        ("router", subjects.CLASSIFIER_OUTCOMES_CONSUMER),
        ("router", subjects.BILLING_CALLS_CONSUMER),
        ("billing", subjects.CLASSIFIER_OUTCOMES_ERASURE_CONSUMER),
        ("classifier", subjects.ROUTER_CONSUMER),
        ("billing", subjects.EXECUTOR_CONSUMER),
    ],
    ids=lambda v: v if isinstance(v, str) else v.durable,
)
async def test_a_user_touches_no_other_services_consumer(
    guarded: GuardedBus, user: str, other: subjects.Consumer
) -> None:
    """Neither another service's durable consumer nor its lag consumer (`lag-<durable>`): not made,
    updated, read or deleted."""
    await _own_consumer(guarded, other)
    nc = await guarded.connect(user)
    try:
        for name in (other.durable, subjects.lag_consumer_name(other)):
            create = f"$JS.API.CONSUMER.CREATE.{EVENTS}.{name}"
            await _refused(nc, f"{create}.{other.filter_subject}", _config(name, other.filter_subject))
            await _refused(nc, f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.{name}", {"batch": 1, "no_wait": True})
            await _refused(nc, f"$JS.API.CONSUMER.DELETE.{EVENTS}.{name}")
    finally:
        await nc.close()
    operator = await nats.connect(guarded.operator_url)
    try:
        info = await operator.jetstream().consumer_info(EVENTS, other.durable)
        assert info.config.filter_subject == other.filter_subject
        assert info.delivered.consumer_seq == 0
    finally:
        await operator.close()
    assert len(guarded.violations()) == 6, guarded.violations()
