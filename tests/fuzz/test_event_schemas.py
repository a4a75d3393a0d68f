"""Event schemas, fuzzed with hypothesis: for every event type in the registry, any payload its published JSON
Schema allows (the AsyncAPI document is generated from the same models) is accepted by the model and
survives encode -> bytes -> decode unchanged; anything else is refused with `InvalidEvent`, never another
exception (a consumer dead-letters `InvalidEvent` with its reason; anything else would be a crash)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.jsonschema.builder import build

from switchyard.common.envelope import MAX_EVENT_BYTES, decode, encode
from switchyard.common.errors import InvalidEvent
from switchyard.common.events.base import EventPayload
from switchyard.common.events.registry import EVENT_TYPES, tenant_of

pytestmark = pytest.mark.unit
EXAMPLES = 12 * (25 if os.environ.get("SWITCHYARD_LONG_TESTS") == "1" else 1)  # `make fuzz`: 25x
MODELS = sorted(EVENT_TYPES.values(), key=lambda m: m.EVENT_TYPE)
FORMATS = {
    "date-time": st.datetimes(
        min_value=datetime(1970, 1, 2), timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])
    ).map(datetime.isoformat)
}
INTS = st.integers(-(2**63), 2**63 - 1)  # what JSON encoders here write
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def payloads(model: type[EventPayload]) -> st.SearchStrategy[Any]:
    """Values the model's JSON Schema admits (schemathesis's JSON Schema generator, the same engine that
    fuzzes the HTTP API); `date-time` strings are ISO 8601 as the wire carries them."""
    schema = _bounded(model.model_json_schema(mode="validation"))
    return build(schema, draft=jsonschema_rs.Draft202012, formats=FORMATS).filter(_i_json)


def _bounded(node: Any) -> Any:
    """Small arrays and free-form objects, so nested events (a task inside a routing decision) stay cheap
    to generate; every field and every branch is still drawn."""
    if isinstance(node, list):
        return [_bounded(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bounded(v) for k, v in node.items()}
    if out.get("type") == "array":
        out.setdefault("maxItems", 2)
    if out.get("type") == "object" and "properties" not in out:
        out.setdefault("maxProperties", 2)
    if out.get("type") == "string":
        out.setdefault("maxLength", 40)
    return out


def _i_json(value: Any) -> bool:
    """Integers within 64 bits. Token counts are bounded by the models (10**9); a `seed` is any integer as
    in OpenAI's API, and 2**64 is one no JSON encoder here writes (see docs/reliability.md)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return all(_i_json(v) for v in value.values())
    if isinstance(value, list):
        return all(_i_json(v) for v in value)
    return True


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.EVENT_TYPE)
@FUZZ
@given(data=st.data())
def test_any_schema_valid_payload_round_trips(model: type[EventPayload], data: st.DataObject) -> None:
    raw = data.draw(payloads(model), label="payload")
    payload = model.model_validate(raw)
    tenant = tenant_of(
        payload
    )  # an event's tenantid is its payload's tenant, where it has one (envelope.placed)
    tenant = "t1" if tenant is None else tenant
    event_id, wire = encode(payload, source="urn:fuzz", tenant_id=tenant, subject="s1")
    assert len(wire) < MAX_EVENT_BYTES
    event, back = decode(wire, (model,))
    assert event.id == event_id and event.type == model.EVENT_TYPE and event.tenantid == (tenant or None)
    assert type(back) is model
    # The wire omits nulls (encode uses exclude_none): absent and null mean the same to every reader.
    assert back.model_dump(mode="json", exclude_none=True) == payload.model_dump(
        mode="json", exclude_none=True
    )


def _mutations(model: type[EventPayload]) -> st.SearchStrategy[Any]:
    schema = model.model_json_schema(mode="validation")
    required = schema.get("required", [])
    props = schema.get("properties", {})
    base = st.deferred(lambda: payloads(model))

    def drop(value: dict[str, Any], key: str) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k != key}

    def wrong_type(value: dict[str, Any], key: str, junk: Any) -> dict[str, Any]:
        return {**value, key: junk}

    junk = st.sampled_from([{"$nested": [1, 2]}, [None], {"a": {"b": {}}}])
    options = [st.one_of(st.none(), INTS, st.text(), st.lists(INTS, max_size=3))]
    if required:
        options.append(st.builds(drop, base, st.sampled_from(required)))
    typed = [k for k, p in props.items() if p.get("type") in ("string", "integer", "number", "boolean")]
    if typed:
        options.append(st.builds(wrong_type, base, st.sampled_from(typed), junk))
    return st.one_of(*options)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.EVENT_TYPE)
@FUZZ
@given(data=st.data())
def test_invalid_payloads_are_refused_with_a_reason(model: type[EventPayload], data: st.DataObject) -> None:
    bad = data.draw(_mutations(model), label="bad payload")
    envelope = {"specversion": "1.0", "id": "e1", "source": "urn:fuzz", "type": model.EVENT_TYPE, "data": bad}
    with pytest.raises(InvalidEvent) as refused:
        decode(orjson.dumps(envelope), (model,))
    assert str(refused.value).strip()


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_arbitrary_bytes_are_refused_with_invalid_event_only(raw: bytes) -> None:
    try:
        decode(raw)
    except InvalidEvent as exc:
        assert str(exc).strip()


@FUZZ
@given(
    envelope=st.fixed_dictionaries(
        {},
        optional={
            "specversion": st.one_of(st.just("1.0"), st.text(max_size=5), INTS),
            "id": st.one_of(st.text(max_size=200), INTS, st.none()),
            "source": st.one_of(st.text(max_size=20), st.none()),
            "type": st.one_of(st.sampled_from(sorted(EVENT_TYPES)), st.text(max_size=40)),
            "time": st.one_of(st.text(max_size=30), INTS),
            "data": st.one_of(st.dictionaries(st.text(max_size=10), INTS, max_size=3), st.text()),
        },
    )
)
def test_malformed_envelopes_are_refused_with_invalid_event_only(envelope: dict[str, Any]) -> None:
    try:
        decode(orjson.dumps(envelope))
    except InvalidEvent as exc:
        assert str(exc).strip()
