from __future__ import annotations

import pytest

from switchyard.gateway import keys, messages
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
        (b'{"model":"auto","messages":[{"role":"user","content":5}]}', "invalid_type", "messages.0.content"),
        (
            b'{"model":"auto","messages":[{"role":"user","content":"x"}],"tool_choice":"always"}',
            "invalid_value",
            "tool_choice",
        ),
        (
            b'{"model":"auto","messages":[{"role":"user","content":"x"}],"temperature":5}',
            "invalid_value",
            "temperature",
        ),
        (b'{"model":"auto","messages":[{"role":"user","content":"x"}],"n":9}', "invalid_value", "n"),
        (b'{"model":"auto","messages":[{"role":"user","content":"x"}],"n":0}', "invalid_value", "n"),
    ],
)
def test_bad_bodies_get_specific_errors(body: bytes, code: str, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_request(body, max_prompt_chars=1000)
    assert err.value.code == code
    assert err.value.param == param
    assert err.value.status == 400


ASKS = b'{"model":"auto","messages":[{"role":"user","content":"x"}],'


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (b'"logit_bias":{"50256":-100}', "logit_bias"),
        (b'"functions":[{"name":"f","parameters":{}}]', "functions"),
        (b'"function_call":"auto"', "function_call"),
        (b'"modalities":["text","audio"]', "modalities"),
        (b'"audio":{"voice":"alloy","format":"wav"}', "audio"),
    ],
)
def test_asking_for_what_is_not_delivered_is_refused_not_ignored(extra: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_request(ASKS + extra + b"}", max_prompt_chars=1000)
    assert (err.value.status, err.value.code, err.value.param) == (400, "unsupported_parameter", param)
    assert err.value.message.startswith(f"{param}: ")


def test_the_off_values_clients_send_by_default_and_fields_that_change_nothing_pass() -> None:
    extra = (
        b'"logprobs":false,"top_logprobs":null,"logit_bias":{},"function_call":"none","modalities":["text"],'
        b'"audio":null,"store":true,"metadata":{"run":"7"},"service_tier":"auto","user":"u-1"'
    )
    parsed = parse_request(ASKS + extra + b"}", max_prompt_chars=1000)
    assert parsed.messages[0].text() == "x" and parsed.user == "u-1"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (b'"stream":"yes"', "stream"),
        (b'"stream":1', "stream"),
        (b'"max_tokens":"5"', "max_tokens"),
        (b'"max_tokens":5.0', "max_tokens"),
        (b'"max_completion_tokens":"5"', "max_completion_tokens"),
        (b'"temperature":"0.5"', "temperature"),
        (b'"top_p":true', "top_p"),
        (b'"seed":"42"', "seed"),
        (b'"parallel_tool_calls":"false"', "parallel_tool_calls"),
        (b'"stream":true,"stream_options":{"include_usage":"true"}', "stream_options.include_usage"),
        (b'"stop":7', "stop"),
        (b'"stop":[1]', "stop"),
        (b'"logprobs":"true"', "logprobs"),
        (b'"logprobs":1', "logprobs"),
        (b'"logprobs":true,"top_logprobs":"5"', "top_logprobs"),
        (b'"logprobs":true,"top_logprobs":2.0', "top_logprobs"),
    ],
)
def test_a_field_of_the_wrong_json_type_is_refused_not_coerced(extra: bytes, param: str) -> None:
    """As OpenAI does (400 `invalid_type`); pydantic's lax mode read "yes" as true and "5" as 5."""
    with pytest.raises(InvalidRequest) as err:
        parse_request(ASKS + extra + b"}", max_prompt_chars=1000)
    assert (err.value.status, err.value.code, err.value.param) == (400, "invalid_type", param)


def test_numbers_keep_their_json_meaning() -> None:
    parsed = parse_request(
        ASKS + b'"temperature":1,"top_p":1,"max_tokens":5,"stream":false}', max_prompt_chars=1000
    )
    assert (parsed.temperature, parsed.top_p, parsed.limit(), parsed.stream) == (1.0, 1.0, 5, False)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (b'"max_tokens":"64"', "max_tokens"),
        (b'"max_tokens":64,"stream":"true"', "stream"),
        (b'"max_tokens":64,"temperature":"1"', "temperature"),
        (
            b'"max_tokens":64,"tool_choice":{"type":"auto","disable_parallel_tool_use":1}',
            "tool_choice.disable_parallel_tool_use",
        ),
    ],
)
def test_the_anthropic_face_refuses_wrong_json_types(extra: bytes, param: str) -> None:
    body = b'{"model":"auto","messages":[{"role":"user","content":"x"}],' + extra + b"}"
    with pytest.raises(InvalidRequest) as err:
        messages.parse_request(body, max_prompt_chars=1000)
    assert (err.value.status, err.value.code, err.value.param) == (400, "invalid_type", param)


def test_oversized_prompt() -> None:
    body = b'{"model":"auto","messages":[{"role":"user","content":"' + b"a" * 2000 + b'"}]}'
    with pytest.raises(RequestTooLarge) as err:
        parse_request(body, max_prompt_chars=1000)
    assert err.value.status == 413 and err.value.code == "prompt_too_large"
    assert "SWITCHYARD_MAX_PROMPT_CHARS" in err.value.message


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


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        (b'"top_k":40', "top_k"),
        (b'"mcp_servers":[{"type":"url","url":"https://mcp.example.com/sse","name":"x"}]', "mcp_servers"),
        (b'"container":"container_011"', "container"),
        (b'"mcp_servers":[]', None),
        (b'"thinking":{"type":"disabled"}', None),
        (b'"metadata":{"user_id":"u-1"}', None),
    ],
)
def test_the_anthropic_face_refuses_what_it_does_not_deliver(extra: bytes, refused: str | None) -> None:
    body = b'{"model":"auto","max_tokens":64,"messages":[{"role":"user","content":"x"}],' + extra + b"}"
    if refused is None:
        assert messages.parse_request(body, max_prompt_chars=1000).messages[0].text() == "x"
        return
    with pytest.raises(InvalidRequest) as err:
        messages.parse_request(body, max_prompt_chars=1000)
    assert (err.value.status, err.value.code, err.value.param) == (400, "unsupported_parameter", refused)
