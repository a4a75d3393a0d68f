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
