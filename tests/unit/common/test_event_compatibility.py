"""Event compatibility across a rolling upgrade (docs/operations/upgrades.md): every event the previous
release published (recorded with its code) decodes with this release's models, and this release's events
still decode when a later one adds fields at any depth (what the previous release does with ours: its
models ignore unknown fields as these do)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from switchyard.common.envelope import decode, encode
from switchyard.common.events import (
    EVENT_TYPES,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskBudget,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
    ToolCall,
    Usage,
)
from tests.support.previous_release import RELEASES, previous_events

AT = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    "item",
    [item for release in RELEASES for item in previous_events(release)],
    ids=lambda i: i["event"]["type"],
)
def test_the_previous_release_s_events_decode(item: dict[str, Any]) -> None:
    event, payload = decode(orjson.dumps(item["event"]), tuple(EVENT_TYPES.values()))
    assert event.type == item["event"]["type"] and event.type == type(payload).EVENT_TYPE


LATER = "x_later_field"


def _with_unknown_fields(model: Any, data: Any) -> Any:
    """`data` (`model` as written) with a field no release knows added to every model object in it."""
    if isinstance(model, BaseModel) and isinstance(data, dict):
        fields = {k: _with_unknown_fields(getattr(model, k, None), v) for k, v in data.items()}
        return {**fields, LATER: {"a": [1]}}
    if isinstance(model, list | tuple) and isinstance(data, list):
        return [_with_unknown_fields(m, d) for m, d in zip(model, data, strict=True)]
    return data


def _without(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without(v) for k, v in value.items() if k != LATER}
    if isinstance(value, list):
        return [_without(v) for v in value]
    return value


def _task() -> TaskSubmitted:
    return TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        user_id="u1",
        api_key_id="k1",
        request=ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=10),
        submitted_at=AT,
        budget=TaskBudget(max_output_tokens=100, calls=2),
    )


def _events() -> list[Any]:
    task = _task()
    classification = Classification(
        type="qa", confidence=0.9, complexity=0.1, urgency=0.5, model_version="m", latency_ms=1.0
    )
    candidate = RouteCandidate(
        model="openai/gpt-5-mini",
        provider="openai",
        upstream_model="gpt-5-mini",
        tier="fast",
        context_window=8000,
    )
    decision = RoutingDecision(tier="fast", candidates=[candidate], policy_version="1")
    usage = Usage(prompt_tokens=3, completion_tokens=1)
    return [
        task,
        TaskRouted(task=task, classification=classification, decision=decision),
        ProviderCallRecorded(
            task_id="t1", tenant_id="acme", api_key_id="k1", attempt=1, provider="openai",
            model="openai/gpt-5-mini", outcome="ok", latency_ms=1.0, usage=usage,
        ),
        TaskCompleted(
            task_id="t1", tenant_id="acme", api_key_id="k1", model="openai/gpt-5-mini", provider="openai",
            tier="fast", content="", finish_reason="tool_calls", usage=usage, attempts=1, latency_ms=1.0,
            completed_at=AT,
            tool_calls=[ToolCall(id="c1", function={"name": "f", "arguments": "{}"})],
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("payload", _events(), ids=lambda p: type(p).__name__)
def test_an_event_with_fields_a_later_release_added_at_every_depth_decodes(payload: Any) -> None:
    _, data = encode(payload, source="/later-release")
    envelope = orjson.loads(data)
    envelope["data"] = _with_unknown_fields(payload, envelope["data"])
    assert orjson.dumps(envelope).count(LATER.encode()) >= 2  # the payload and its nested models
    envelope["x_later_attribute"] = "v"  # a CloudEvents extension attribute a later release adds
    _, decoded = decode(orjson.dumps(envelope), (type(payload),))
    # ignored, or carried as it came where a model keeps what it does not know (a message's fields)
    assert _without(decoded.model_dump(mode="json")) == payload.model_dump(mode="json")
