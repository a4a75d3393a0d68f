"""A call we stopped waiting for after its request went out (a timeout of ours, or a client's shorter
wait: `cut_short`) was billed nothing, though its provider had the prompt and charged it (OpenAI and
Anthropic bill a request whose client went away). It is billed for its prompt, estimated, as a call we
cancel is; the text never read is not billed (the platform carries it). A connection never made, and a
provider's own error answer, are not billed. Through the real OpenAI adapter (its HTTP transport a stand-in
that takes longer than the call may)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from switchyard.common.events import TaskFailed
from switchyard.executor.providers.base import Provider
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from tests.unit.executor.test_execution import Bus, run
from tests.unit.executor.test_task_timeouts import TIGHT, bounded

pytestmark = pytest.mark.unit


def openai(handler: httpx.AsyncBaseTransport) -> dict[str, Provider]:
    client = httpx.AsyncClient(transport=handler, base_url="http://upstream.test/")
    settings = OpenAISettings(api_key="sk-test", base_url="http://upstream.test/v1")
    return {"deep": OpenAIProvider(settings, client=client)}


async def slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(5)
    return httpx.Response(500)


async def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("connect timed out", request=request)


async def timed_out(request: httpx.Request) -> httpx.Response:
    return httpx.Response(408, json={"error": {"message": "upstream timed out", "type": "timeout"}})


async def calls_of(seconds: float | None, handler: object, *, stream: bool) -> tuple[TaskFailed, Bus]:
    bus = Bus()
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    outcome = await run(bounded(seconds, stream=stream), openai(transport), bus, policy=TIGHT)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout", outcome
    return outcome, bus


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("seconds", "outcome"), [(0.1, "cut_short"), (None, "timeout")])
async def test_a_call_abandoned_after_it_went_out_is_billed_for_its_prompt(
    seconds: float | None, outcome: str, stream: bool
) -> None:
    failed, bus = await calls_of(seconds, slow, stream=stream)
    calls = [(c.outcome, c.billable, c.usage_estimated, c.usage.completion_tokens) for _, c in bus.calls]
    assert calls == [(outcome, True, True, 0)]
    prompt = bus.calls[0][1].usage.prompt_tokens
    assert prompt > 0
    # listed in the failed task's charged calls: the gateway settles its budgets at what billing charges
    assert [(c.model, c.usage.prompt_tokens) for c in failed.charged] == [("deep/model-deep", prompt)]


@pytest.mark.parametrize("handler", [unreachable, timed_out])
async def test_a_connection_never_made_or_the_providers_own_timeout_answer_is_not_billed(
    handler: object,
) -> None:
    failed, bus = await calls_of(None, handler, stream=False)
    assert [(c.outcome, c.billable) for _, c in bus.calls] == [("timeout", False)]
    assert failed.charged == []
