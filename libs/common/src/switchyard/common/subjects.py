"""The one table of subjects, streams, durable consumers and KV buckets.

Services import names from here; no subject string is written anywhere else. The AsyncAPI document is
generated from `CHANNELS` below, so adding a subject here documents it.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "switchyard"

# Streams. EVENTS holds every domain event (limits retention, so several durable consumers read it
# independently); DLQ holds poison messages with the reason they were rejected.
STREAM_EVENTS = "SWITCHYARD"
STREAM_EVENTS_SUBJECTS = (
    f"{PREFIX}.task.>",
    f"{PREFIX}.result.>",
    f"{PREFIX}.provider.>",
    f"{PREFIX}.billing.>",
)
STREAM_DLQ = "SWITCHYARD_DLQ"
STREAM_DLQ_SUBJECTS = (f"{PREFIX}.dlq.>",)

# Task pipeline. External systems publish TASK_SUBMITTED exactly as the gateway does.
TASK_SUBMITTED = f"{PREFIX}.task.submitted"
TASK_CLASSIFIED = f"{PREFIX}.task.classified"
TASK_ROUTED = f"{PREFIX}.task.routed"
TASK_TIMED_OUT = f"{PREFIX}.task.timed_out"
PROVIDER_CALL = f"{PREFIX}.provider.call"
USAGE_RECORDED = f"{PREFIX}.billing.usage"

RESULT_PREFIX = f"{PREFIX}.result"
RESULT_ALL = f"{RESULT_PREFIX}.>"
# Streamed chunks travel on core NATS (not stored): the stored result event carries the whole answer.
CHUNK_PREFIX = f"{PREFIX}.chunk"
PING_PREFIX = f"{PREFIX}.ping"
DLQ_PREFIX = f"{PREFIX}.dlq"

# KV buckets.
KV_PROVIDERS = "switchyard-providers"

SERVICES = ("gateway", "classifier", "router", "executor", "billing", "audit")


def result_subject(task_id: str) -> str:
    return f"{RESULT_PREFIX}.{task_id}"


def chunk_subject(task_id: str) -> str:
    return f"{CHUNK_PREFIX}.{task_id}"


def ping_subject(service: str) -> str:
    return f"{PING_PREFIX}.{service}"


def dlq_subject(service: str) -> str:
    return f"{DLQ_PREFIX}.{service}"


@dataclass(frozen=True, slots=True)
class Consumer:
    """A durable pull consumer: its name, stream and the subject it filters on."""

    durable: str
    stream: str
    filter_subject: str
    max_deliver: int = 5


CLASSIFIER_CONSUMER = Consumer("classifier", STREAM_EVENTS, TASK_SUBMITTED)
ROUTER_CONSUMER = Consumer("router", STREAM_EVENTS, TASK_CLASSIFIED)
EXECUTOR_CONSUMER = Consumer("executor", STREAM_EVENTS, TASK_ROUTED, max_deliver=3)
# Billing and audit write to the database: they ride out a database outage of ~20 minutes (backoff
# doubling to 30 s) before a message is dead-lettered.
BILLING_CONSUMER = Consumer("billing", STREAM_EVENTS, RESULT_ALL, max_deliver=50)
AUDIT_CONSUMER = Consumer("audit", STREAM_EVENTS, f"{PREFIX}.>", max_deliver=50)
