"""A submission the classifier cannot read, but whose task it can name, is answered with a failure."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from switchyard.common import subjects
from switchyard.common.invalid import answer

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


def _raw(data: object, **envelope: object) -> bytes:
    return orjson.dumps(
        {"specversion": "1.0", "id": "ext-1", "source": "s", "type": "x", **envelope, "data": data}
    )


def test_a_submission_for_another_tenant_is_answered_to_its_sender_alone() -> None:
    """A scoped system's submission naming another tenant (`tenant_mismatch`): the answer goes to the
    sender's tenant, on its result subject, and names the sender, never the tenant the event named."""
    raw = _raw({"task_id": "job-1", "tenant_id": "acme", "request": {"model": "auto"}})
    reply = answer(raw, "another tenant's subject", now=NOW, code="tenant_mismatch", sender="globex")
    assert reply is not None
    assert reply.subject == subjects.result_subject("globex", "job-1")
    assert (reply.failed.tenant_id, reply.failed.error_code) == ("globex", "tenant_mismatch")


def test_a_submission_that_names_its_task_is_answered_on_its_result_subject() -> None:
    raw = _raw({"task_id": "job-1", "tenant_id": "acme", "request": {"model": "auto"}})
    reply = answer(
        raw, "invalid switchyard.task.submitted.v1 payload: request.chat.messages: Field required", now=NOW
    )
    assert reply is not None
    assert reply.subject == subjects.result_subject("acme", "job-1") and reply.origin == "ext-1"
    assert (reply.failed.task_id, reply.failed.tenant_id) == ("job-1", "acme")
    assert (
        reply.failed.error_code == "invalid_event" and "request.chat.messages" in reply.failed.error_message
    )
    assert reply.failed.failed_at == NOW
    again = answer(raw, "same", now=NOW)
    assert again is not None and again.origin == reply.origin  # its answer's id is derived from it


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1]",
        orjson.dumps({"id": "x", "data": "text"}),
        _raw({"tenant_id": "acme"}),  # no task
        _raw({"task_id": "job-1"}),  # no tenant
        _raw({"task_id": "bad id!", "tenant_id": "acme"}),  # not a task id: no subject to answer on
        _raw({"task_id": "a" * 65, "tenant_id": "acme"}),
        _raw({"task_id": "job-1", "tenant_id": ""}),
    ],
)
def test_a_submission_that_names_no_task_is_only_dead_lettered(raw: bytes) -> None:
    assert answer(raw, "whatever", now=NOW) is None
