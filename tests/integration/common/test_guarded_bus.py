"""The guarded bus of the permission tests (tests/support/guarded_bus.py) sees a refusal: a user publishing
what its grant does not name is found in the server's log, so a test that ends with `assert_clean` fails
when a service was refused anything."""

from __future__ import annotations

import asyncio

import pytest

from switchyard.common import subjects
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration


async def test_a_refused_publish_is_found_in_the_servers_log(guarded: GuardedBus) -> None:
    guarded.assert_clean()
    errors: list[str] = []
    executor = await guarded.connect("executor", errors)
    try:
        await executor.publish(subjects.ADMIN_ACTION, b"{}")
        await executor.flush()
        await asyncio.sleep(0.3)
    finally:
        await executor.close()
    assert any(subjects.ADMIN_ACTION in line for line in guarded.violations()), guarded.violations()
    with pytest.raises(AssertionError):
        guarded.assert_clean()
    assert errors and "permissions violation" in errors[0]
