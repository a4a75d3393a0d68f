"""Which subjects get a copy on the previous release's subject (`switchyard.common.legacy_subjects`)."""

from __future__ import annotations

import pytest

from switchyard.common import subjects
from switchyard.common.legacy_subjects import previous_subject

pytestmark = pytest.mark.unit


def test_a_task_s_result_and_chunk_subjects_map_to_the_previous_release_s() -> None:
    assert previous_subject(subjects.result_subject("acme", "t1")) == "switchyard.result.t1"
    assert previous_subject(subjects.chunk_subject("acme", "t1")) == "switchyard.chunk.t1"


@pytest.mark.parametrize(
    "subject",
    [
        "switchyard.result.t1",  # already the previous release's: never copied again
        "switchyard.chunk.t1",
        "switchyard.result.a.b.c",
        "switchyard.result.",
        "switchyard.results.abc.t1",
        subjects.TASK_SUBMITTED,
        subjects.scoped(subjects.TASK_SUBMITTED, "acme"),
        subjects.PROVIDER_CALL,
    ],
)
def test_no_other_subject_is_copied(subject: str) -> None:
    assert previous_subject(subject) is None
