"""The stranded-event sweep knows every durable consumer of Switchyard's on the events stream, and no other
(an advisory of another system's consumer is left alone): the same set an erasure waits for."""

from __future__ import annotations

import pytest

from switchyard.common import subjects
from switchyard.executor import stranded

pytestmark = pytest.mark.unit


def test_the_sweep_knows_switchyards_durables_alone() -> None:
    assert set(stranded.PROCESS_OF) == subjects.EVENT_DURABLES
    assert subjects.results_consumer("integrator", "acme").durable not in subjects.EVENT_DURABLES
