"""How long a request's task may run: the client's own word (`x-switchyard-timeout`, or the timeout its
SDK sends on every request), within the deployment's maximum; the gateway's defaults otherwise."""

from __future__ import annotations

import pytest

from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import InvalidRequest, TaskTimeout
from switchyard.gateway.timeouts import Wait, declared, unattended, wait_for

pytestmark = pytest.mark.unit
SETTINGS = GatewaySettings(task_timeout_s=120, request_timeout_max_s=600)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        # what the OpenAI SDK sends by default (its read timeout), Anthropic's, Google's GenAI SDKs'
        ({"x-stainless-read-timeout": "600.0"}, 600.0),
        ({"x-stainless-timeout": "600", "x-stainless-read-timeout": "300"}, 300.0),
        ({"x-server-timeout": "45"}, 45.0),
        # the client's own header wins over its SDK's
        ({"x-switchyard-timeout": "30", "x-stainless-read-timeout": "600.0"}, 30.0),
        ({"x-switchyard-timeout": " 2.5 "}, 2.5),
        # an SDK header that says nothing usable is passed over, not refused
        ({"x-stainless-read-timeout": "None", "x-stainless-timeout": "120"}, 120.0),
        ({"x-stainless-read-timeout": "inf"}, None),
        ({"x-stainless-read-timeout": "-1"}, None),
    ],
)
def test_the_wait_a_client_declares(headers: dict[str, str], seconds: float | None) -> None:
    assert declared(headers) == seconds


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf", ""])
def test_an_unusable_x_switchyard_timeout_is_a_400_naming_it(value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        declared({"x-switchyard-timeout": value})
    assert refused.value.param == "x-switchyard-timeout"
    assert "positive number of seconds" in refused.value.message


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        # nothing said: the gateway's wait, the executor's own bound
        ({}, Wait(120.0, None, 5.0)),
        # the SDKs' default: ten minutes; the executor cuts 10 s before the gateway stops waiting
        ({"x-stainless-read-timeout": "600.0"}, Wait(600.0, 590.0, 5.0)),
        # past the maximum: the maximum
        ({"x-switchyard-timeout": "3600"}, Wait(600.0, 590.0, 5.0)),
        # a short wait shortens the task (its margin a tenth of it)
        ({"x-switchyard-timeout": "20"}, Wait(20.0, 18.0, 5.0)),
    ],
)
def test_the_gateways_wait_and_the_tasks_bound(headers: dict[str, str], wait: Wait) -> None:
    assert wait_for(headers, SETTINGS, since=5.0) == wait


def test_time_the_request_spent_in_the_gateway_is_spent_of_both_bounds() -> None:
    """The client's timer runs from its request's arrival: 4 s waiting for room in the intake and being
    admitted are 4 s less for the task and for the gateway's wait. Before, both started when the task was
    published, so the gateway waited past its client and the executor ran past the gateway."""
    wait = Wait(20.0, 18.0, since=100.0)
    assert wait.task_left(now=104.0) == 14.0
    assert wait.left(now=104.0) == 16.0
    assert Wait(120.0, None, since=100.0).task_left(now=104.0) is None  # the executor's own, from submission


@pytest.mark.parametrize("wait", [Wait(20.0, 18.0, since=100.0), Wait(20.0, None, since=100.0)])
def test_a_request_whose_clients_wait_is_spent_in_the_gateway_is_not_run(wait: Wait) -> None:
    with pytest.raises(TaskTimeout) as late:
        wait.task_left(now=121.0)
    assert late.value.status == 504 and late.value.code == "task_timeout"
    assert late.value.message.startswith("The request spent 21.0 s in the gateway")
    assert wait.left(now=125.0) == 0.001


def test_a_task_nobody_waits_for_on_a_connection_may_run_the_maximum_unless_it_says_less() -> None:
    assert unattended({}, SETTINGS) == 600.0
    assert unattended({"x-stainless-read-timeout": "600.0"}, SETTINGS) == 600.0
    assert unattended({"x-switchyard-timeout": "90"}, SETTINGS) == 90.0
    assert unattended({"x-switchyard-timeout": "9000"}, SETTINGS) == 600.0


@pytest.mark.parametrize(
    "headers",
    [
        # OpenAI(timeout=30).post("/tasks", ...): how long the SDK waits for the 202, not for the task
        {"x-stainless-read-timeout": "30.0"},
        {"x-stainless-timeout": "30"},  # the JS SDKs'
        {"x-server-timeout": "30"},
    ],
)
def test_an_sdks_own_timeout_does_not_bound_a_task_nobody_waits_for(headers: dict[str, str]) -> None:
    """A task API submission is answered at once (202): the SDK's timeout is its wait for that answer, and
    the task, read later, may run the maximum."""
    assert unattended(headers, SETTINGS) == 600.0
