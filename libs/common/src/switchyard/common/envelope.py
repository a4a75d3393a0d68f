"""CloudEvents 1.0 envelope, JSON structured mode.

Extensions: `tenantid` (the tenant the event belongs to) and `traceparent` (W3C trace context). Any
CloudEvents library can produce and read these; `decode` validates both the envelope and the payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.common import collector, subjects
from switchyard.common.errors import InvalidEvent, TenantMismatch
from switchyard.common.events.base import EventPayload
from switchyard.common.events.registry import event_model, placement, subject_of, tenant_of
from switchyard.common.events.tasks import TaskSubmitted
from switchyard.common.ids import new_id

CONTENT_TYPE = "application/cloudevents+json"
# The header an event is published with its id in: JetStream de-duplicates a stream's messages by it.
MSG_ID = "Nats-Msg-Id"
# What a consumer decodes at most: the bus's own limit as shipped (NATS `max_payload` 8 MB: deploy/nats,
# the k8s values, the embedded run), so every event the bus carries is read. A task must fit with what the
# pipeline adds to it: the gateway refuses a larger one (413 `bus_max_payload_exceeded`) before it is sent.
MAX_EVENT_BYTES = 8 * 1024 * 1024
P = TypeVar("P", bound=EventPayload)


def _specversion_required(schema: dict[str, Any]) -> None:
    """The documented schema says what `decode_envelope` requires: CloudEvents 1.0's `specversion` too."""
    schema["required"] = ["specversion", *schema.get("required", [])]


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, json_schema_extra=_specversion_required)

    specversion: str = Field(default="1.0", pattern=r"^1\.0$")
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str = "application/json"
    tenantid: str | None = None
    traceparent: str | None = None
    data: dict[str, Any]


def encode(
    payload: EventPayload,
    *,
    source: str,
    event_id: str | None = None,
    tenant_id: str | None = None,
    subject: str | None = None,
    traceparent: str | None = None,
    data: bytes | None = None,
) -> tuple[str, bytes]:
    """Returns (event id, JSON bytes) of a structured-mode CloudEvent carrying `payload` (`data`: the
    payload as `written` already, put in as it is)."""
    eid = event_id or new_id()
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": eid,
        "source": source,
        "type": type(payload).EVENT_TYPE,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
    }
    if subject:
        envelope["subject"] = subject
    if tenant_id:
        envelope["tenantid"] = tenant_id
    if traceparent:
        envelope["traceparent"] = traceparent
    if data is not None:
        envelope["data"] = orjson.Fragment(data)
        return eid, orjson.dumps(envelope)
    with collector.paused():  # its values live only until written
        envelope["data"] = payload.model_dump(mode="json", exclude_none=True)
        return eid, orjson.dumps(envelope)


def encoded_size(payload: EventPayload, *, within: int = 0) -> int:
    """The bytes `payload` takes as an event's `data` (the envelope's other fields add a few hundred);
    `within` as for `written`."""
    return len(written(payload, within=within))


def written(payload: EventPayload, *, within: int = 0) -> bytes:
    """`payload` as an event's `data` (JSON), which `encode` takes as it is. Written as deep as it travels:
    in the envelope's `data`, and `within` fields of other events further down (a task in TaskClassified's
    and TaskRouted's `task`: 1), so that a payload nested too deep for any of them raises here as `encode`
    would there (orjson.JSONEncodeError; pydantic's ValueError)."""
    with collector.paused():  # its values live only until written
        carried: Any = payload.model_dump(mode="json", exclude_none=True)
        for _ in range(within + 1):
            carried = [carried]
        text = orjson.dumps(carried)
    return text[within + 1 : len(text) - within - 1]


def decode_envelope(raw: bytes) -> CloudEvent:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON (or not UTF-8): {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidEvent("a CloudEvent must be a JSON object")
    if "specversion" not in obj:  # required by CloudEvents 1.0; the model's default serves our own tests
        raise InvalidEvent("not a CloudEvents 1.0 structured event: specversion: Field required")
    try:
        return CloudEvent.model_validate(obj)
    except ValidationError as exc:
        raise InvalidEvent(f"not a CloudEvents 1.0 structured event: {_summarise(exc)}") from exc


def decode_payload(event: CloudEvent, expected: tuple[type[P], ...] | None = None) -> EventPayload:
    model = event_model(event.type)
    if model is None:
        raise InvalidEvent(f"unknown event type {event.type!r}")
    if expected is not None and model not in expected:
        names = ", ".join(m.EVENT_TYPE for m in expected)
        raise InvalidEvent(f"event type {event.type!r} is not accepted here (expected {names})")
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {event.type} payload: {_summarise(exc)}") from exc


def decode(
    raw: bytes, expected: tuple[type[P], ...] | None = None, *, subject: str | None = None
) -> tuple[CloudEvent, EventPayload]:
    """`subject`: the one it came on, which must be its type's (see `placed`)."""
    event = decode_envelope(raw)
    payload = decode_payload(event, expected)
    placed(event, payload, subject=subject)
    return event, payload


def placed(event: CloudEvent, payload: EventPayload, *, subject: str | None) -> None:
    """Refuses an event that says two things: a CloudEvents `tenantid` other than its payload's tenant
    (readers that go by the extension and the services, which go by the payload, would disagree on whose
    it is), or a subject other than its type's (a typo'd subject is stored by the stream and seen only by
    a consumer of everything, the audit's, which would record a task that nobody runs), or a task a
    tenant-scoped system sent that says it came from the gateway (`origin: http`). An event on its
    kind's subject for another tenant (a tenant-scoped system naming a tenant it is not scoped to) is a
    TenantMismatch (`tenant_mismatch`): nobody acts on it."""
    tenant = tenant_of(payload)
    if event.tenantid is not None and tenant is not None and event.tenantid != tenant:
        raise InvalidEvent(
            f"the event's tenantid {event.tenantid!r} is not its payload's tenant_id {tenant!r}"
        )
    if subject is None:
        return
    token = placement(payload, subject)
    if token is None:
        if (
            isinstance(payload, TaskSubmitted)
            and payload.origin == "http"
            and subject != subjects.TASK_SUBMITTED
        ):
            # the gateway's tasks skip the executor's look-up of a stored result (their ids are its own)
            raise InvalidEvent(
                f"a task on {subject} (a tenant-scoped system's) must say origin 'bus', "
                "not 'http' (the gateway's)"
            )
        return
    if token:
        raise TenantMismatch(
            f"a {event.type} event of tenant {tenant!r} came on {subject}, another tenant's subject",
            token=token,
        )
    raise InvalidEvent(f"a {event.type} event is published on {subject_of(payload)}, not {subject}")


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
