"""JSON mappings of a ledger entry: OCSF API Activity (class 6003) and Elastic Common Schema. Pure.

OCSF (schema 1.1.0): class_uid 6003, category_uid 6, activity_id from the action's verb (1 create, 2 read,
3 update, 4 delete, 99 other), type_uid = 600300 + activity_id, status_id 1 success / 2 failure,
metadata.uid = event id, metadata.sequence = seq, metadata.tenant_uid = tenant, actor.user.name = actor,
api.operation = action, resources[0].uid = resource, metadata.correlation_uid = the trace id (when the
entry's event carried a trace context), unmapped = details and the entry hash; for an entry that records
where its event came from (format v2), unmapped.provenance = {subject, by} and src_endpoint.svc_name = the
subject.

ECS (8.11): @timestamp = occurred, event.{action, outcome, id, sequence, created (recorded), kind, category,
type, dataset, module, provider, hash}, user.name = actor, organization.id = tenant, trace.id and span.id
(when the entry's event carried a trace context), and the rest under `switchyard.ledger` (its
`provenance`, {subject, by}, for an entry that records where its event came from: format v2).
"""

from __future__ import annotations

from typing import Any

from switchyard.audit.chain import timestamp
from switchyard.audit.export.record import PRODUCT, VENDOR, VERSION, Record, epoch_ms

OCSF_VERSION = "1.1.0"
ECS_VERSION = "8.11.0"
API_ACTIVITY = 6003
APPLICATION_ACTIVITY = 6
ACTIVITIES = (
    (1, "Create", ("create", "submit", "add", "issue")),
    (2, "Read", ("read", "get", "list", "view")),
    (3, "Update", ("update", "change", "set", "rotate", "route", "classify", "complete")),
    (4, "Delete", ("delete", "revoke", "remove", "disable")),
)


def activity(action: str) -> tuple[int, str]:
    verb = action.rsplit(".", 1)[-1]
    for uid, name, verbs in ACTIVITIES:
        if verb in verbs:
            return uid, name
    return 99, "Other"


def ocsf(record: Record, *, details: Any = None) -> dict[str, Any]:
    activity_id, activity_name = activity(record.action)
    failed = record.failed
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT, "vendor_name": VENDOR, "version": VERSION},
        "uid": record.event_id,
        "sequence": record.seq,
        "tenant_uid": record.tenant_id,
        "logged_time": epoch_ms(record.recorded_at),
        "log_name": "ledger",
    }
    trace = record.trace()
    if trace is not None:
        metadata["correlation_uid"] = trace[0]
    unmapped: dict[str, Any] = {
        "details": record.details_obj() if details is None else details,
        "entry_hash": record.entry_hash,
        "recorded_at": timestamp(record.recorded_at),
        "occurred_at": timestamp(record.occurred_at),
    }
    source: dict[str, Any] = {"name": record.actor}
    provenance = record.provenance_obj()
    if provenance is not None:
        unmapped["provenance"] = provenance
        source["svc_name"] = provenance.get("subject")
    return {
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "category_uid": APPLICATION_ACTIVITY,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": API_ACTIVITY * 100 + activity_id,
        "time": epoch_ms(record.occurred_at),
        "severity_id": 3 if failed else 1,
        "severity": "Medium" if failed else "Informational",
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "message": f"{record.action} {record.resource} {record.outcome}",
        "actor": {"user": {"name": record.actor, "uid": record.actor}, "app_name": PRODUCT},
        "api": {
            "operation": record.action,
            "service": {"name": PRODUCT},
            "request": {"uid": record.event_id},
        },
        "src_endpoint": source,
        "resources": [{"uid": record.resource, "type": record.resource.split("/", 1)[0]}],
        "cloud": {"provider": PRODUCT},
        "metadata": metadata,
        "unmapped": unmapped,
    }


def ecs(record: Record, *, details: Any = None) -> dict[str, Any]:
    admin = record.action.startswith(("admin.", "key.", "api_key.", "policy.", "tenant.", "user."))
    out: dict[str, Any] = {
        "@timestamp": timestamp(record.occurred_at),
        "ecs": {"version": ECS_VERSION},
        "message": f"{record.action} {record.resource} {record.outcome}",
        "event": {
            "kind": "event",
            "category": ["configuration" if admin else "api"],
            "type": ["change" if admin else "access"],
            "action": record.action,
            "outcome": record.outcome if record.outcome in ("success", "failure") else "unknown",
            "id": record.event_id,
            "sequence": record.seq,
            "created": timestamp(record.recorded_at),
            "dataset": "switchyard.ledger",
            "module": "switchyard",
            "provider": "switchyard",
            "hash": record.entry_hash,
        },
        "user": {"name": record.actor},
        "organization": {"id": record.tenant_id},
        "switchyard": {
            "ledger": {
                "seq": record.seq,
                "tenant_id": record.tenant_id,
                "resource": record.resource,
                "details": record.details_obj() if details is None else details,
                "entry_hash": record.entry_hash,
            }
        },
    }
    provenance = record.provenance_obj()
    if provenance is not None:
        out["switchyard"]["ledger"]["provenance"] = provenance
    trace = record.trace()
    if trace is not None:
        out["trace"], out["span"] = {"id": trace[0]}, {"id": trace[1]}
    return out
