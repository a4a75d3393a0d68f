"""The publishers table the ledger's provenance reads is the NATS grants `switchyard up` gives: a grant added
to a service (or an integrator) without the table would have the ledger say someone else published."""

from __future__ import annotations

import pytest

from switchyard.cli import bus_permissions
from switchyard.common import publishers, subjects

pytestmark = pytest.mark.unit


def _stored(pattern: str) -> bool:
    """A subject pattern the events stream stores (results, tasks...; not chunks, dead letters, inboxes)."""
    return any(publishers.matches(stream, pattern) for stream in subjects.STREAM_EVENTS_SUBJECTS)


def test_every_service_grant_on_the_events_stream_is_in_the_table_and_nothing_else() -> None:
    granted: dict[str, set[str]] = {}
    for user, grant in bus_permissions.GRANTS.items():
        for pattern in grant.events:
            if _stored(pattern):
                granted.setdefault(pattern, set()).add(user)
    table = {pattern: set(names) for pattern, names in publishers.SERVICE_EVENTS.items()}
    assert table == granted


def test_integrators_publish_only_what_their_grants_allow() -> None:
    scoped = bus_permissions.integrator_permissions(("acme",), user="partner")
    allowed = [p for p in scoped["publish"]["allow"] if _stored(p)]  # type: ignore[index]
    token = subjects.tenant_token("acme")
    assert sorted(allowed) == sorted(f"{base}.{token}" for base in subjects.SCOPED)
    for subject in allowed:
        assert publishers.publishers(subject) == (f"integrator:{token}",)
    everyone = bus_permissions.integrator_permissions(None, user="partner")
    for subject in (p for p in everyone["publish"]["allow"] if _stored(p)):  # type: ignore[index]
        assert publishers.ALL_TENANTS in publishers.publishers(subject)


def test_who_may_publish_a_subject() -> None:
    token = subjects.tenant_token("acme")
    assert publishers.publishers(subjects.TASK_ROUTED) == ("service:router",)
    assert publishers.publishers(subjects.TASK_SUBMITTED) == ("service:gateway", "integrator:all")
    assert publishers.publishers(subjects.scoped(subjects.TASK_FEEDBACK, "acme")) == (f"integrator:{token}",)
    assert publishers.publishers(subjects.result_subject("acme", "t1")) == (
        "service:classifier",
        "service:executor",
        "service:gateway",
        "service:router",
    )
    # no grant but operator's (which may publish anything)
    assert publishers.publishers("switchyard.task.submitted.a.b") == ("operator",)
    assert publishers.matches("switchyard.>", "switchyard.task.routed")
    assert not publishers.matches("switchyard.>", "switchyard")
    assert not publishers.matches("switchyard.result.*", "switchyard.result.a.b")
