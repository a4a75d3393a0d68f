"""Request mapping and error mapping of each adapter, without a server."""

from __future__ import annotations

from dataclasses import replace

import httpx
import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage
from switchyard.executor.providers import anthropic as anthropic_provider
from switchyard.executor.providers import openai as openai_provider
from switchyard.executor.providers.anthropic import wire as anthropic_wire
from switchyard.executor.providers.base import ProviderCall
from switchyard.executor.providers.http import host_of, retry_after
from switchyard.executor.providers.openai import wire as openai_wire

pytestmark = pytest.mark.unit


def _call(**kw: object) -> ProviderCall:
    messages = (
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="developer", content="Answer in English."),
        ChatMessage(role="user", content="Capital of France?"),
    )
    return ProviderCall(model="m", messages=messages, **kw)  # type: ignore[arg-type]


def test_openai_itself_gets_max_completion_tokens_and_compatible_servers_max_tokens() -> None:
    body = openai_wire.request_body(_call(max_tokens=7), stream=True, openai_itself=True)
    assert body["max_completion_tokens"] == 7 and "max_tokens" not in body
    assert body["stream_options"] == {"include_usage": True}
    body = openai_wire.request_body(_call(max_tokens=7, stop=("\n",)), stream=False, openai_itself=False)
    assert body["max_tokens"] == 7 and body["stop"] == ["\n"] and "stream_options" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "developer", "user"]


def test_anthropic_moves_system_and_developer_messages_to_the_system_field() -> None:
    body = anthropic_wire.request_body(_call(temperature=1.6), stream=False, default_max_tokens=4096)
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert body["max_tokens"] == 4096  # required by the Messages API
    assert body["temperature"] == 1.0  # OpenAI's 0-2 range clamped to Anthropic's 0-1


def test_anthropic_leaves_out_an_empty_answer_before_the_last_turn() -> None:
    """A conversation that holds an empty answer (one cut before any text, sent back by a client or a
    stored response) is refused by Anthropic ("all messages must have non-empty content except for the
    optional final assistant message"): that turn is left out, an empty last one (a prefill) is kept."""
    turns = [
        ChatMessage(role="user", content="Name a colour."),
        ChatMessage(role="assistant", content=""),
        ChatMessage(role="user", content="Please answer."),
        ChatMessage(role="assistant", content=[]),
    ]
    _, messages = anthropic_wire.split_messages(turns)
    assert messages == [
        {"role": "user", "content": "Name a colour."},
        {"role": "user", "content": "Please answer."},
        {"role": "assistant", "content": []},
    ]


def test_anthropic_maps_content_parts_and_images() -> None:
    message = ChatMessage(
        role="user",
        content=[
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    )
    _, messages = anthropic_wire.split_messages([message])
    assert messages[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
    ]


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"),
    [
        (
            401,
            b'{"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}',
            "auth",
            False,
        ),
        (
            429,
            b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}',
            "rate_limited",
            True,
        ),
        (
            429,
            b'{"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}',
            "quota_exhausted",
            False,
        ),
        (402, b'{"error": {"message": "Insufficient Balance"}}', "quota_exhausted", False),  # DeepSeek
        (
            400,
            b'{"error": {"message": "too long", "code": "context_length_exceeded"}}',
            "context_too_long",
            False,
        ),
        (400, b'{"error": {"message": "no", "code": "content_policy_violation"}}', "content_policy", False),
        (404, b'{"error": {"message": "no model", "code": "model_not_found"}}', "bad_request", False),
        (503, b"<html>busy</html>", "overloaded", True),
        (408, b"", "timeout", True),
    ],
)
def test_openai_error_mapping(status: int, body: bytes, kind: str, retryable: bool) -> None:
    error = openai_wire.error_from_body(status, body, httpx.Headers({"retry-after": "2"}))
    assert (error.kind, error.retryable, error.retry_after) == (kind, retryable, 2.0)
    assert error.code == f"provider_{kind}"


@pytest.mark.parametrize(
    ("status", "err_type", "message", "kind"),
    [
        (401, "authentication_error", "invalid x-api-key", "auth"),
        (403, "permission_error", "no", "auth"),
        (429, "rate_limit_error", "slow down", "rate_limited"),
        (529, "overloaded_error", "Overloaded", "overloaded"),
        (500, "api_error", "oops", "overloaded"),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "context_too_long",
        ),
        (400, "invalid_request_error", "Output blocked by content filtering policy", "content_policy"),
        (400, "invalid_request_error", "max_tokens: Field required", "bad_request"),
        (402, "billing_error", "There is an issue with your billing", "quota_exhausted"),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
            "upgrade or purchase credits.",
            "quota_exhausted",
        ),
        (  # the spend limit set in the Console (Claude Code users quote it: anthropics/claude-code#38035)
            400,
            "invalid_request_error",
            "You have reached your specified API usage limits. You will regain access on 2026-04-01 at "
            "00:00 UTC.",
            "quota_exhausted",
        ),
        (  # a 429 no wait ends: a prompt past 200k tokens needs the account's extra usage (#33514)
            429,
            "rate_limit_error",
            "Extra usage is required for long context requests.",
            "context_too_long",
        ),
        (
            429,
            "rate_limit_error",
            "Usage credits are required for long context requests.",
            "context_too_long",
        ),
    ],
)
def test_anthropic_error_mapping(status: int, err_type: str, message: str, kind: str) -> None:
    raw = f'{{"type": "error", "error": {{"type": "{err_type}", "message": "{message}"}}}}'.encode()
    assert anthropic_wire.error_from_body(status, raw).kind == kind


def test_retry_after_in_seconds_milliseconds_and_http_dates() -> None:
    assert retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "3"})) == 0.25
    date = httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"})
    assert retry_after(date, now=lambda: 1445412480.0) == 10.0
    assert retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx.Headers()) is None


def test_settings_read_the_sdk_variables_and_keep_keys_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-secret-value-123456")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@127.0.0.1:11434/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value-123456")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    openai = openai_provider.OpenAISettings()
    anthropic = anthropic_provider.AnthropicSettings()
    assert openai.resolved_base_url() == "http://user:pw@127.0.0.1:11434/v1"
    assert anthropic.resolved_base_url() == "https://api.anthropic.com"
    shown = repr(openai) + str(openai) + repr(anthropic) + repr(openai_provider.OpenAIProvider(openai))
    assert "secret-value" not in shown
    assert host_of(openai.resolved_base_url()) == "127.0.0.1:11434"  # no credentials, no path


def test_openai_defaults_to_the_public_api_when_the_base_url_is_unset_or_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = openai_provider.OpenAISettings()
    assert settings.resolved_base_url() == "https://api.openai.com/v1"
    assert settings.is_openai_itself() and not settings.configured


def test_openai_itself_is_the_public_url_unless_said_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy in front of OpenAI (an egress proxy, an AI gateway) is OpenAI for the model rules and the
    Responses API when OPENAI_ITSELF says so; a server at OpenAI's URL is not when it says false."""
    monkeypatch.delenv("OPENAI_ITSELF", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8443/openai/v1")
    assert not openai_provider.OpenAISettings().is_openai_itself()
    monkeypatch.setenv("OPENAI_ITSELF", "true")
    assert openai_provider.OpenAISettings().is_openai_itself()
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1/")
    monkeypatch.setenv("OPENAI_ITSELF", "false")
    assert not openai_provider.OpenAISettings().is_openai_itself()
    monkeypatch.delenv("OPENAI_ITSELF")
    assert openai_provider.OpenAISettings().is_openai_itself()


def test_a_reply_without_usage_is_counted_by_estimate_and_says_so() -> None:
    """An OpenAI-compatible server that reports no usage: the executor's estimate, flagged, so the call's
    record and the task's result say the count was not the upstream's."""
    said = {"model": "m", "choices": [{"index": 0, "message": {"content": "Paris is the capital."}}]}
    reply = openai_wire.parse_reply(orjson.dumps(said), _call())
    assert reply.usage_estimated and reply.usage.completion_tokens > 0
    counted = {**said, "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}
    reply = openai_wire.parse_reply(orjson.dumps(counted), _call())
    assert not reply.usage_estimated and reply.usage.completion_tokens == 5


def test_anthropic_refuses_a_call_for_logprobs_before_sending_it() -> None:
    with pytest.raises(ProviderError) as err:
        anthropic_wire.request_body(
            replace(_call(logprobs=True), model="claude-sonnet-4-5"), stream=False, default_max_tokens=1024
        )
    assert err.value.kind == "bad_request" and not err.value.sent and not err.value.retryable
    assert "returns no token log probabilities" in err.value.message
    anthropic_wire.request_body(
        replace(_call(), model="claude-sonnet-4-5"), stream=False, default_max_tokens=1024
    )
