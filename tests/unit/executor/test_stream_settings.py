"""The bounds of a long task checked together at startup: a setting that would cut or redo a running
task refuses to start the service, naming both settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchyard.executor.config import ExecutorSettings
from switchyard.gateway.config import GatewaySettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        # a stream's first output may come up to the task deadline: a shorter cap cuts it on that output
        (
            {"task_deadline_s": 110, "stream_max_s": 60},
            ("SWITCHYARD_STREAM_MAX_S", "SWITCHYARD_TASK_DEADLINE_S"),
        ),
        # a running task's message is marked in progress every heartbeat: one as slow as the ack wait
        # lets the bus redeliver it while it runs (run twice, paid twice)
        ({"heartbeat_s": 30, "ack_wait_s": 30}, ("SWITCHYARD_HEARTBEAT_S", "SWITCHYARD_ACK_WAIT_S")),
    ],
)
def test_executor_settings_that_would_cut_or_redo_a_running_task_are_refused(
    settings: dict[str, float], names: tuple[str, str]
) -> None:
    with pytest.raises(ValidationError) as refused:
        ExecutorSettings(**settings)  # type: ignore[arg-type]
    assert all(name in str(refused.value) for name in names), refused.value


def test_the_gateways_stream_cap_is_no_shorter_than_its_wait_for_the_first_output() -> None:
    with pytest.raises(ValidationError) as refused:
        GatewaySettings(task_timeout_s=120, stream_max_timeout_s=60)
    assert "SWITCHYARD_STREAM_MAX_TIMEOUT_S" in str(refused.value)
    assert "SWITCHYARD_TASK_TIMEOUT_S" in str(refused.value)


def test_the_defaults_and_equal_bounds_are_accepted() -> None:
    ExecutorSettings()
    ExecutorSettings(task_deadline_s=5, stream_max_s=5, heartbeat_s=1, ack_wait_s=4)
    GatewaySettings()
    GatewaySettings(task_timeout_s=4, stream_max_timeout_s=4)
