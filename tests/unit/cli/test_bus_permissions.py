"""The permissions `switchyard up` gives each service's NATS user: who may publish what."""

from __future__ import annotations

from switchyard.cli import bus_permissions
from switchyard.common import subjects


def _publishers(subject: str) -> set[str]:
    found = set()
    for user in bus_permissions.GRANTS:
        granted = bus_permissions.permissions(user)
        assert granted is not None
        if subject in granted["publish"]["allow"]:  # type: ignore[index]
            found.add(user)
    return found


def test_only_the_gateway_erases_and_only_the_router_routes() -> None:
    assert _publishers(subjects.ADMIN_ACTION) == {"gateway"}
    assert _publishers(subjects.TASK_ROUTED) == {"router"}
    assert _publishers(subjects.TASK_CLASSIFIED) == {"classifier"}
    assert _publishers(subjects.USAGE_RECORDED) == {"billing"}
    assert _publishers(f"$KV.{subjects.KV_CLASSIFIER_HEADS}.>") == set()
    assert _publishers(f"$O.{subjects.OBJ_CLASSIFIER_HEADS}.>") == set()


def test_no_service_may_create_update_or_delete_a_stream_and_operator_may_do_all() -> None:
    for user in bus_permissions.GRANTS:
        granted = bus_permissions.permissions(user)
        assert granted is not None
        allowed = granted["publish"]["allow"]  # type: ignore[index]
        assert not [a for a in allowed if a.startswith(("$JS.API.STREAM.CREATE", "$JS.API.STREAM.UPDATE"))]
        assert not [a for a in allowed if a.startswith(("$JS.API.STREAM.DELETE", "$JS.API.>", ">"))]
        assert granted["subscribe"]["allow"][0] == f"_INBOX_{user}.>"  # type: ignore[index]
        assert not [a for a in granted["subscribe"]["allow"] if a.startswith("_INBOX.")]  # type: ignore[index]
    assert bus_permissions.permissions("operator") is None
    block = bus_permissions.authorization_block()
    assert '{user: "operator", password: $OPERATOR_NATS_PASSWORD}' in block


def test_only_the_gateway_and_the_services_that_refuse_unknown_tenants_read_the_tenant_registry() -> None:
    readers = set()
    for user in bus_permissions.GRANTS:
        granted = bus_permissions.permissions(user)
        assert granted is not None
        if f"$JS.API.DIRECT.GET.KV_{subjects.KV_TENANTS}" in granted["publish"]["allow"]:  # type: ignore[index]
            readers.add(user)
    assert readers == {"gateway", "classifier", "executor"}
    audit = bus_permissions.permissions("audit")
    assert audit is not None and subjects.ping_subject("siem-exporter") not in audit["subscribe"]["allow"]  # type: ignore[index]


def test_of_the_events_stream_only_scanners_get_messages_and_consumers_are_made_on_their_filters() -> None:
    """A message get's sequence and subject are in its body (no permission reaches them), and so is the
    filter of a consumer made through `CONSUMER.CREATE.<stream>.<name>` or `CONSUMER.DURABLE.CREATE`: such
    a grant would let a user read any event (tests/integration/common/test_bus_permissions_reads.py)."""
    events = subjects.STREAM_EVENTS
    getters = set()
    for user in bus_permissions.GRANTS:
        granted = bus_permissions.permissions(user)
        assert granted is not None
        allowed: list[str] = granted["publish"]["allow"]  # type: ignore[index]
        if f"$JS.API.STREAM.MSG.GET.{events}" in allowed:
            getters.add(user)
        scans = events in bus_permissions.GRANTS[user].scans
        made = [a for a in allowed if a.startswith(f"$JS.API.CONSUMER.CREATE.{events}.")]
        assert scans or all(len(a.split(".")) > 6 for a in made), (user, made)
        assert not [a for a in allowed if a.startswith(f"$JS.API.CONSUMER.DURABLE.CREATE.{events}")]
        own = {c.filter_subject for c in bus_permissions.GRANTS[user].consumers}
        assert scans or {a.split(".", 6)[6] for a in made} <= own, (user, made)
    # audit's consumer takes every event already; it gets a task's stored result (a rating's check)
    assert getters == {"gateway", "executor", "audit"}
