"""What each NATS user of the embedded run may publish and subscribe to: least privilege per service.

Each service may publish only the events it sends (only `gateway` an erasure, `switchyard.admin.action`;
only `router` `switchyard.task.routed`), its dead letters, the RPCs it calls, and, of the JetStream API,
what reading its own durable consumers takes (fetch, ack, info: `$JS.API.CONSUMER.*.SWITCHYARD.<its
consumer>`; made only on its own filter: `CONSUMER.CREATE.SWITCHYARD.<name>.<filter>`, whose name and
filter nats-server 2.10+ checks against the request's, and no form with the filter in the body alone,
since an update may change a consumer's filter) and their lag (`lag-<durable>` on the same filter, made,
fetched once and deleted per sample: common/lag.py; not a message get, whose sequence and subject are
in its body, where no permission reaches: it let billing read any event, a task's prompt among them),
the KV buckets and object stores it reads (direct gets, watches) and writes (`$KV.<bucket>.>`,
`$O.<bucket>.>`) and stream info. No service may create, update or delete a stream (`operator` makes them:
bus_stores.py), so none can map or republish a subject into one it may not publish. Replies to the
requests it serves (its pings, billing's and the ledger's RPCs) go to its callers' inboxes, which it may
publish to: `_INBOX_gateway` (the API, `/readyz?strict`), `_INBOX_operator` (the CLI), its own (its
health check) and `_INBOX` (an operator's tool that sets no prefix of its own). Not `allow_responses`:
that lets a user publish once to the reply subject of anything it hears, so a user that may send a subject
it hears (every service its own ping; the gateway results) could send itself a message whose reply is
`switchyard.task.routed` and answer it there. A publish into the events stream whose reply subject the
stream stores has the server's ack (`{"stream": ..., "seq": ...}`) stored there, which the stream's
readers dead-letter as no event (`invalid_event`). Replies to its own
requests come on its own inbox prefix (`_INBOX_<user>`, bus_auth), the only inboxes it may subscribe to.
`operator` (the CLI) may do everything.

NATS does not check two subjects against these permissions (nats-server 2.15, issue 8274): the deliver
subject of a push consumer (any user that reads a KV bucket may create one on it: every watch is one) and
the reply subject of a request to the JetStream API (a direct get answers with the stored message, as it
is). So a user that may write a bucket and read it can have the server carry what it wrote to another
service's core subscriptions, and a direct get's answer to a subject the events stream stores is stored
there as an event. The receivers close what this opened (common/bus_guard.py): an RPC (billing's, the
ledger's) is answered only when its reply subject is the inbox of a user here allowed to call it (the
server's carriers have `$JS.ACK...` or none); the other core subscriptions (results, chunks,
cancellations, pings) drop what the server marks as its own (a `$JS.` reply subject, a `Nats-Stream` or
`Status` header); the events stream's readers dead-letter a stored answer (`Nats-Stream`). What remains:
such messages still reach the subscriptions (refused there, counted in
`switchyard_bus_refused_messages_total`) and still take room in the events stream; a user may have
the server re-deliver events its own consumer reads to a subject of the stream (a copy of a real event,
which the consumers' idempotency on the event id absorbs); a client library's own inbox subscriptions
(replies, KV watches, pull deliveries) are not checked, only unguessable (random per connection). And the
KV buckets and object stores are open the same way: a direct get answered to `$KV.<bucket>.<key>` is
stored there, so a user that may read one bucket can write a revision of any key of any bucket (a copy of
a value it wrote, or an API answer's JSON). The readers where a value grants, revokes or redirects read
through common/kv_guard.py, which refuses such a revision by its marks (a stored `Nats-Stream`... header,
no header and no value, the API's envelope; counted as `forged_kv_entry`): the tenant registry, the
gateway's auth changes, lockout, throttle and exact cache, the classifier heads pointer, budgets, the
executors' breakers and rate limits, every `kv.read_all` (tests/integration/common/test_kv_guard.py,
gateway/test_forged_kv_readers.py, classifier/test_forged_heads_pointer.py). Still open: the forged
revision replaces the stored value until its writer writes again, and the other buckets' readers (the
gateway's counters and leases, records) take it as written. The object stores are open the same way
(`$O.<bucket>.M.<name>`, `$O.<bucket>.C.<nuid>`): every object is read through common/objects.py, which
refuses a forged meta or chunk by the same marks before any byte is handed on (`forged_object_meta`,
`forged_object_chunk`) and checks the digest (tests/integration/gateway/test_forged_objects.py).
JetStream in an account of its own, which the users' account imports, would close the path in the
server (on nats-server 2.15.1 a cross-account request's answer is published on `_R_...` in the JetStream
account and no stream stored it, README "Trust"); the embedded run does not use that layout.

Where each path runs under these grants on a real nats-server, failing on any refusal (the server's log:
"Publish Violation", "Subscription Violation"; a service's: "permissions violation"), in tests/:

| test | paths |
| --- | --- |
| e2e/test_bus_permissions_paths.py | the gateway's API (files, batches, stored responses, task API, cache, |
| | RPCs, admin, erasure), dead letters, the SIEM exporter (it uses no bus) |
| | classifier heads promoted (the replicas follow them) |
| integration/billing/test_billing_permissions.py | budget alerts, webhook deliveries, retries, erasure |
| integration/classifier/test_outcomes_permissions.py | the outcome recorder (`classifier-outcomes`) |
| integration/pipeline/test_poison_event.py | audit's consumer counting its outage retries |
| | (`switchyard-outage-retries`), dead-lettering an event that kills it |
| integration/executor/test_executor_permissions.py | breakers, rate limits, tool state, carried calls; |
| | the router's health board reading them |
| integration/common/test_bus_permissions_lag.py | each service's consumer lag (its ages; replicas at once) |
| integration/common/test_bus_permissions_reads.py | refusals: a message get of the events stream, a |
| | consumer on another filter, another service's consumer or its `lag-<durable>` |
| e2e/test_bus_permissions.py | refusals; `operator`'s commands (`classifier promote`) |
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from switchyard.common import lag
from switchyard.common import subjects as s
from switchyard.common.bus_auth import INBOX_PREFIX
from switchyard.common.bus_guard import OPERATOR, RPC_CALLERS

EVENTS = s.STREAM_EVENTS
# Who sends requests the services answer: the RPCs' callers (billing's and the ledger's, for the API: the
# lists the services' guard checks replies against), the gateway's pings for `/readyz?strict`, and the CLI
# (`operator`, which may do everything); and each service itself (its health check pings its replicas).
CALLERS = tuple(
    dict.fromkeys(("gateway", *(c for callers in RPC_CALLERS.values() for c in callers), OPERATOR))
)
DLQ = s.STREAM_DLQ


@dataclass(frozen=True)
class Grant:
    """One service's rights, as names: what it publishes and serves, its consumers and stores."""

    processes: tuple[str, ...]  # the processes that connect as this user (their pings, dead letters)
    events: tuple[str, ...] = ()  # event subjects it publishes
    requests: tuple[str, ...] = ()  # RPC subjects it calls
    serves: tuple[str, ...] = ()  # subjects it subscribes to (RPCs it answers, core subjects it hears)
    consumers: tuple[s.Consumer, ...] = ()  # its durable consumers on the events stream
    reads: tuple[str, ...] = ()  # KV buckets it reads and watches
    writes: tuple[str, ...] = ()  # KV buckets it writes (and reads)
    objects_read: tuple[str, ...] = ()
    objects_write: tuple[str, ...] = ()
    scans: tuple[str, ...] = ()  # streams it reads through ephemeral consumers (and message gets)
    deletes: tuple[str, ...] = ()  # streams it deletes messages from (an erasure)
    extra: tuple[str, ...] = field(default=())  # other JetStream API subjects


# switchyard.result.<tenant token>.<task id>, and `result.<task id>` where a previous release's replicas
# publish them during a rolling upgrade (docs/operations/upgrades.md; drop it in the release after)
RESULTS = (f"{s.RESULT_PREFIX}.*.*", f"{s.RESULT_PREFIX}.*")
CHUNKS = (f"{s.CHUNK_PREFIX}.*.*", f"{s.CHUNK_PREFIX}.*")

GRANTS: dict[str, Grant] = {
    "gateway": Grant(
        processes=("gateway",),
        events=(
            s.TASK_SUBMITTED,
            s.TASK_CANCELLED,
            s.TASK_FEEDBACK,
            s.TASK_TIMED_OUT,
            s.ADMIN_ACTION,
            s.SECURITY_GUARDRAIL,
            s.SECURITY_AUTH_FAILURE,
            *RESULTS,
            *CHUNKS,
        ),
        requests=(f"{s.PING_PREFIX}.*", f"{s.LEDGER_RPC_PREFIX}.>", f"{s.BILLING_RPC_PREFIX}.>"),
        serves=(f"{s.RESULT_PREFIX}.>", f"{s.CHUNK_PREFIX}.>", s.TASK_CANCELLED, f"{s.TASK_CANCELLED}.*"),
        writes=(
            s.KV_AUTH_CHANGES,
            s.KV_BUDGET_LIMITS,
            s.KV_BUDGETS,
            s.KV_FILES,
            s.KV_GATEWAY_LIMITS,
            s.KV_GATEWAYS,
            s.KV_RESPONSES,
            s.KV_TASKS,
            s.KV_TENANTS,
            s.KV_SPEND,
            s.KV_SPEND_TOTAL,
            s.KV_GATEWAY_CONTROL,
            s.KV_BATCHES,
            s.KV_CACHE,
        ),
        reads=(s.KV_PROVIDERS,),
        objects_write=(s.OBJ_FILES, s.OBJ_BATCH_VECTORS, s.OBJ_EMBEDDINGS),
        scans=(EVENTS, DLQ),
        deletes=(EVENTS, DLQ),
        extra=("$JS.API.STREAM.NAMES", f"$JS.API.CONSUMER.LIST.{EVENTS}", f"$JS.API.CONSUMER.LIST.{DLQ}"),
    ),
    "classifier": Grant(
        processes=("classifier", "classifier-outcomes"),
        events=(s.TASK_CLASSIFIED, *RESULTS),
        consumers=(
            s.CLASSIFIER_CONSUMER,
            s.CLASSIFIER_SCOPED_CONSUMER,
            s.CLASSIFIER_OUTCOMES_CONSUMER,
            s.CLASSIFIER_OUTCOMES_ERASURE_CONSUMER,
        ),
        reads=(s.KV_CLASSIFIER_HEADS, s.KV_TENANTS),
        writes=(s.KV_CLASSIFIER_REPLICAS, s.KV_OUTAGE_RETRIES),
        objects_read=(s.OBJ_CLASSIFIER_HEADS,),
    ),
    "router": Grant(
        processes=("router",),
        events=(s.TASK_ROUTED, *RESULTS),
        consumers=(s.ROUTER_CONSUMER, s.ROUTER_STATS_CONSUMER),
        reads=(s.KV_BUDGETS, s.KV_BUDGET_LIMITS, s.KV_PROVIDERS, s.KV_BREAKERS, s.KV_RATE_LIMITS),
        writes=(s.KV_ROUTING_STATS,),
    ),
    "executor": Grant(
        processes=("executor",),
        # any service's dead letters: the events stranded at their consumers' last delivery (stranded.py)
        events=(s.PROVIDER_CALL, *RESULTS, *CHUNKS, f"{s.DLQ_PREFIX}.*"),
        consumers=(s.EXECUTOR_CONSUMER, s.STRANDED_CONSUMER),
        reads=(s.KV_TENANTS,),
        writes=(s.KV_BREAKERS, s.KV_RATE_LIMITS, s.KV_TOOL_STATE, s.KV_CARRIED, s.KV_PROVIDERS),
        objects_write=(s.OBJ_EMBEDDINGS, s.OBJ_BATCH_VECTORS),
        scans=(EVENTS,),
    ),
    "billing": Grant(
        processes=("billing",),
        events=(s.USAGE_RECORDED, s.BUDGET_ALERT),
        serves=(f"{s.BILLING_RPC_PREFIX}.>",),
        consumers=(
            s.BILLING_CONSUMER,
            s.BILLING_CALLS_CONSUMER,
            s.BILLING_WEBHOOKS_CONSUMER,
            s.BILLING_ERASURE_CONSUMER,
        ),
        reads=(s.KV_BUDGET_LIMITS,),
        writes=(s.KV_OUTAGE_RETRIES,),  # its consumers ride out database outages (common/outage_ride.py)
    ),
    "audit": Grant(
        processes=("audit",),  # the SIEM exporter (same user) reads the ledger's database, not the bus
        serves=(f"{s.LEDGER_RPC_PREFIX}.>",),
        consumers=(s.AUDIT_CONSUMER,),
        writes=(s.KV_OUTAGE_RETRIES,),
        # a rating is kept only on a task with a stored result (`common/results.py`): message gets only
        extra=(f"$JS.API.STREAM.MSG.GET.{EVENTS}",),
    ),
}


def permissions(user: str) -> dict[str, object] | None:
    """nats-server's `permissions` map for `user` (None: `operator`, or a user with no grant, may do all)."""
    grant = GRANTS.get(user)
    if grant is None:
        return None
    publish = [
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.*",
        *grant.events,
        *grant.requests,
        *(s.dlq_subject(process) for process in grant.processes),
        # its own health check (compose's and Kubernetes' readiness) pings its replicas as this user
        *(s.ping_subject(process) for process in grant.processes),
        *grant.extra,
    ]
    for consumer in grant.consumers:
        durable = consumer.durable
        publish += [
            _creating(consumer, durable),
            f"$JS.API.CONSUMER.INFO.{consumer.stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{durable}",
            f"$JS.ACK.{consumer.stream}.{durable}.>",
        ]
    for consumer in _lagged(grant):  # the oldest pending event's time: one consumer per sample, deleted
        name = s.lag_consumer_name(consumer)
        publish += [
            _creating(consumer, name),
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.{name}",
            f"$JS.API.CONSUMER.DELETE.{EVENTS}.{name}",
        ]
    for bucket in (*grant.reads, *grant.writes):
        publish += _reading(f"KV_{bucket}")
    for bucket in grant.writes:
        publish += [f"$KV.{bucket}.>", f"$JS.API.STREAM.PURGE.KV_{bucket}"]
    for bucket in (*grant.objects_read, *grant.objects_write):
        publish += _reading(f"OBJ_{bucket}")
    for bucket in grant.objects_write:
        publish += [f"$O.{bucket}.>", f"$JS.API.STREAM.PURGE.OBJ_{bucket}"]
    for stream in grant.scans:
        publish += _reading(stream)
    for stream in grant.deletes:
        publish.append(f"$JS.API.STREAM.MSG.DELETE.{stream}")
    subscribe = [
        f"{INBOX_PREFIX}_{user}.>",
        *(s.ping_subject(process) for process in grant.processes),
        *grant.serves,
    ]
    # answers to its requesters; `_INBOX.>`: an operator's tool that sets no inbox prefix of its own
    publish += [f"{INBOX_PREFIX}_{caller}.>" for caller in (*CALLERS, user)] + [f"{INBOX_PREFIX}.>"]
    return {"publish": {"allow": _unique(publish)}, "subscribe": {"allow": _unique(subscribe)}}


def _creating(consumer: s.Consumer, name: str) -> str:
    """Making (or updating) the consumer `name` on `consumer`'s filter alone: nats-server 2.10+ checks
    the name and filter in this subject against the request's, and no other form of the request (the
    filter only in the body: `CONSUMER.CREATE.<stream>.<name>`, `CONSUMER.DURABLE.CREATE`) is granted,
    since an update may change a consumer's filter."""
    return f"$JS.API.CONSUMER.CREATE.{consumer.stream}.{name}.{consumer.filter_subject}"


def _lagged(grant: Grant) -> tuple[s.Consumer, ...]:
    """The consumers whose lag its processes sample (`common/lag.py`)."""
    sampled = {c for process in grant.processes for c in lag.consumers_of(process)}
    return tuple(c for c in grant.consumers if c in sampled)


def _reading(stream: str) -> list[str]:
    """Reading a stream's messages: direct and message gets, and the ephemeral (ordered) consumers of KV
    watches and object reads, with their flow control."""
    return [
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


INTEGRATOR = "integrator"


@dataclass(frozen=True)
class Integrator:
    """Another system's NATS user: `tenants`, the organisations it acts for (None: every one)."""

    user: str = INTEGRATOR
    tenants: tuple[str, ...] | None = None


def integrator_permissions(
    tenants: Sequence[str] | None = None, *, user: str = INTEGRATOR
) -> dict[str, object]:
    """Another system's user on a shared bus (README, "The bus contract": Trust): it may only submit,
    cancel and rate tasks and hear their results and chunks. No other event (a forged result or usage
    entry), no RPC, no KV bucket, no dead letter, and of the JetStream API only its publishes' acks and
    its own durable consumer on its tenants' stored results (`_kept_results`: results published while it
    was away wait for it); its replies come on its own inbox prefix (nats-py: `inbox_prefix="_INBOX_<user>"`).
    As every user, it can have those publishes' acks and API answers sent to any reply subject (the
    module's docstring: a KV key, an object's meta, a subject of the events stream), refused by their
    readers where they grant or redirect (kv_guard).

    Scoped to `tenants`, it publishes only on their subjects (`switchyard.task.submitted.<token>`...,
    `subjects.scoped`), whose readers act on an event only when it names the subject's tenant, and hears
    only their results and chunks (`switchyard.result.<token>.*`; its consumers: `<user>-<token>`). With
    `tenants` None it publishes on the bare subjects, acting for any tenant it names, and hears every
    tenant's results (its consumer: `<user>-all`): an all-tenant integrator, given only when asked
    (`--all-tenants`)."""
    inbox = f"{INBOX_PREFIX}_{user}.>"
    if tenants is None:
        return {
            "publish": {
                "allow": [s.TASK_SUBMITTED, s.TASK_CANCELLED, s.TASK_FEEDBACK, *_kept_results(user, None)]
            },
            "subscribe": {"allow": [f"{s.RESULT_PREFIX}.>", f"{s.CHUNK_PREFIX}.>", inbox]},
        }
    tokens = _unique(s.tenant_token(tenant) for tenant in tenants)
    return {
        "publish": {
            "allow": [
                *(f"{subject}.{token}" for token in tokens for subject in s.SCOPED),
                *(right for tenant in tenants for right in _kept_results(user, tenant)),
            ]
        },
        "subscribe": {
            "allow": [
                *(f"{prefix}.{token}.*" for token in tokens for prefix in (s.RESULT_PREFIX, s.CHUNK_PREFIX)),
                inbox,
            ]
        },
    }


def _kept_results(user: str, tenant_id: str | None) -> list[str]:
    """Reading its tenant's stored results through its own durable consumer (`subjects.results_consumer`):
    made on that filter alone (`_creating`: the name and filter are checked, so it cannot be re-pointed at
    another tenant's results or any other event), fetched and acked; no other consumer, no message get."""
    consumer = s.results_consumer(user, tenant_id)
    return [
        _creating(consumer, consumer.durable),
        f"$JS.API.CONSUMER.INFO.{consumer.stream}.{consumer.durable}",
        f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}",
        f"$JS.ACK.{consumer.stream}.{consumer.durable}.>",
    ]


def user_permissions(user: str, integrators: Sequence[Integrator] = ()) -> dict[str, object] | None:
    """`user`'s permissions: an integrator's, else a service's (`permissions`)."""
    for integrator in integrators:
        if integrator.user == user:
            return integrator_permissions(integrator.tenants, user=user)
    return permissions(user)


def authorization_block(
    passwords: Mapping[str, str] | None = None, *, integrators: Sequence[Integrator] = ()
) -> str:
    """nats.conf's `authorization` block with every user's permissions, and the `integrators`' when asked.
    `passwords` (per user) are written as given, which may be bcrypt hashes (nats-server compares a
    password whose entry starts `$2a$` with it); without them each is the `$<USER>_NATS_PASSWORD`
    variable from the server's environment."""
    users: list[str] = [*GRANTS, OPERATOR, *(i.user for i in integrators)]
    lines = []
    for user in users:
        password = json.dumps(passwords[user]) if passwords else f"${_variable(user)}_NATS_PASSWORD"
        entry = f"    {{user: {json.dumps(user)}, password: {password}"
        granted = user_permissions(user, integrators)
        if granted is not None:
            entry += f", permissions: {json.dumps(granted)}"
        lines.append(entry + "}")
    return "authorization {\n  users: [\n" + "\n".join(lines) + "\n  ]\n}\n"


def _variable(user: str) -> str:
    return user.upper().replace("-", "_")
