"""The plan a user acts under: their own, never above their organisation's."""

from __future__ import annotations

import pytest

from switchyard.gateway.access import roles

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("user", "org", "acts"),
    [
        (None, "pro", "pro"),  # no plan of their own: the organisation's
        ("", "free", "free"),
        ("free", "enterprise", "free"),  # a lower one of their own: theirs
        ("enterprise", "pro", "pro"),  # given before the organisation was moved down: capped
        ("pro", "free", "free"),
        ("pro", "pro", "pro"),
    ],
)
def test_a_users_plan_is_capped_by_their_organisations(user: str | None, org: str, acts: str) -> None:
    assert roles.plan_of(user, org) == acts


def test_plans_are_ordered_free_pro_enterprise() -> None:
    assert roles.above("enterprise", "pro") and roles.above("pro", "free")
    assert not roles.above("free", "free") and not roles.above("free", "enterprise")
