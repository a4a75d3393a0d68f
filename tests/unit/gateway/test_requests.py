from __future__ import annotations

import pytest

from switchyard.gateway import keys
from switchyard.gateway.completions import build_task, parse_request
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit
OK = b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}'


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"", "invalid_json", None),
        (b"{not json", "invalid_json", None),
        (b"[]", "invalid_json", None),
        (b'{"messages":[{"role":"user","content":"hi"}]}', "missing_field", "model"),
        (b'{"model":"auto","messages":[]}', "invalid_value", "messages"),
        (
            b'{"model":"auto","messages":[{"role":"wizard","content":"x"}]}',
            "invalid_value",
            "messages.0.role",
        ),
        (
            b'{"model":"auto","messages":[{"role":"user","content":"x"}],"temperature":5}',
            "invalid_value",
            "temperature",
        ),
        (b'{"model":"auto","messages":[{"role":"user","content":"x"}],"n":2}', "invalid_value", "n"),
    ],
)
def test_bad_bodies_get_specific_errors(body: bytes, code: str, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_request(body, max_prompt_chars=1000)
    assert err.value.code == code
    assert err.value.param == param
    assert err.value.status == 400


def test_oversized_prompt() -> None:
    body = b'{"model":"auto","messages":[{"role":"user","content":"' + b"a" * 2000 + b'"}]}'
    with pytest.raises(RequestTooLarge) as err:
        parse_request(body, max_prompt_chars=1000)
    assert err.value.status == 413 and err.value.code == "prompt_too_large"


def test_valid_body_becomes_a_task_of_the_callers_tenant() -> None:
    parsed = parse_request(OK, max_prompt_chars=1000)
    task = build_task(
        parsed, Principal(tenant_id="t1", api_key_id="k1", user_id="u1", key_prefix="abc"), priority="high"
    )
    assert task.tenant_id == "t1" and task.api_key_id == "k1" and task.priority == "high"
    assert task.request.messages[0].text() == "hi"
    with pytest.raises(InvalidRequest):
        build_task(
            parsed,
            Principal(tenant_id="t1", api_key_id="k1", user_id=None, key_prefix="abc"),
            priority="urgent!",
        )


def test_keys_are_identified_by_prefix_and_stored_hashed() -> None:
    key, prefix = keys.generate()
    assert key.startswith(f"sy_{prefix}_") and len(key) == 3 + 8 + 1 + 32
    assert keys.parse_prefix(key) == prefix
    digest = keys.hash_key(key)
    assert key not in digest and len(digest) == 64
    assert keys.matches(key, digest)
    assert not keys.matches(key[:-1] + ("A" if key[-1] != "A" else "B"), digest)
    assert keys.parse_prefix("sk-not-ours") is None
