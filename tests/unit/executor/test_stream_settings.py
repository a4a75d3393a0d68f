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


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        # a client may ask to wait this long for a stream's first output: the stream's cap must allow it
        (
            {"request_timeout_max_s": 900, "stream_max_timeout_s": 600},
            ("SWITCHYARD_STREAM_MAX_TIMEOUT_S", "SWITCHYARD_REQUEST_TIMEOUT_MAX_S"),
        ),
        # a task API task may run this long: followed for less, it would read timed out while it runs
        (
            {"request_timeout_max_s": 900, "async_task_timeout_s": 600},
            ("SWITCHYARD_ASYNC_TASK_TIMEOUT_S", "SWITCHYARD_REQUEST_TIMEOUT_MAX_S"),
        ),
        # a request whose SDK says how long it waits (OpenAI's and Anthropic's always do) would be waited
        # for less than one that says nothing
        (
            {"request_timeout_max_s": 60, "task_timeout_s": 120},
            ("SWITCHYARD_REQUEST_TIMEOUT_MAX_S", "SWITCHYARD_TASK_TIMEOUT_S"),
        ),
    ],
)
def test_the_longest_request_a_client_may_ask_fits_the_gateways_other_bounds(
    settings: dict[str, float], names: tuple[str, str]
) -> None:
    with pytest.raises(ValidationError) as refused:
        GatewaySettings(**settings)  # type: ignore[arg-type]
    assert all(name in str(refused.value) for name in names), refused.value


def test_the_defaults_and_equal_bounds_are_accepted() -> None:
    ExecutorSettings()
    ExecutorSettings(task_deadline_s=5, stream_max_s=5, heartbeat_s=1, ack_wait_s=4)
    GatewaySettings()
    GatewaySettings(task_timeout_s=4, stream_max_timeout_s=4, request_timeout_max_s=4)
