"""The Gemini adapter's wire mapping: settings, roles, finish reasons, usage and error bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionCall, Reasoning, ToolCall
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.providers.anthropic import AnthropicSettings
from switchyard.executor.providers.base import ProviderCall
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings, wire
from switchyard.executor.providers.openai import OpenAISettings
from switchyard.executor.registry import build_providers
from switchyard.executor.tool_state import text_id, tool_call_ids

pytestmark = pytest.mark.unit


def test_settings_read_googles_variables_and_keep_the_key_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-secret-value-123456")
    monkeypatch.setenv("GEMINI_BASE_URL", "")
    settings = GeminiSettings()
    assert settings.configured and settings.resolved_base_url() == "https://generativelanguage.googleapis.com"
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-other-secret-654321")
    assert GeminiSettings().api_key.get_secret_value() == "AIza-other-secret-654321"  # type: ignore[union-attr]
    shown = repr(settings) + str(settings) + repr(GeminiProvider(settings))
    assert "secret-value" not in shown
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", "")
    assert not GeminiSettings().configured


def test_the_registry_announces_gemini_by_host_only_when_a_key_is_set() -> None:
    settings = ExecutorSettings(local_enabled=False)
    plain = dict(openai=OpenAISettings(api_key=None), anthropic=AnthropicSettings(api_key=None))
    off = build_providers(settings, **plain, gemini=GeminiSettings(api_key=None))
    assert "gemini" not in off.providers
    on = build_providers(
        settings,
        **plain,
        gemini=GeminiSettings(api_key="k", base_url="https://user:pw@gemini.example:8443/x"),
    )
    assert on.endpoints == {"gemini": "gemini.example:8443"}


def test_roles_merge_into_alternating_turns_and_the_system_prompt_moves_out() -> None:
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="developer", content="Use metric units."),
        ChatMessage(role="user", content="Hi"),
        ChatMessage(
            role="user",
            content=[
                {"type": "text", "text": "and"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        ),
        ChatMessage(role="assistant", content="Hello"),
    ]
    system, contents = wire.split_messages(messages)
    assert system == "Be brief.\n\nUse metric units."
    assert contents == [
        {
            "role": "user",
            "parts": [
                {"text": "Hi"},
                {"text": "and"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            ],
        },
        {"role": "model", "parts": [{"text": "Hello"}]},
    ]


def test_gemini_3_and_later_get_the_signature_sentinel_on_replayed_calls() -> None:
    """Gemini 3 refuses a replayed function call without its thought signature, which no client's tool
    call carries: the first call of each model turn gets Google's documented sentinel; 2.x gets none."""
    calls = [
        ToolCall(id="c1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}')),
        ToolCall(id="c2", function=FunctionCall(name="get_weather", arguments='{"city": "Rome"}')),
    ]
    turns = (
        ChatMessage(role="user", content="Weather in Paris and Rome?"),
        ChatMessage(role="assistant", tool_calls=calls),
        ChatMessage(role="tool", tool_call_id="c1", content="18C"),
        ChatMessage(role="tool", tool_call_id="c2", content="21C"),
    )

    def model_turn(model: str) -> list[dict[str, object]]:
        parts: list[dict[str, object]] = wire.request_body(ProviderCall(model=model, messages=turns))[
            "contents"
        ][1]["parts"]
        return parts

    signed = model_turn("gemini-3-pro-preview")
    assert signed[0]["thoughtSignature"] == wire.SKIP_SIGNATURE and "thoughtSignature" not in signed[1]
    assert model_turn("models/gemini-4-argon")[0]["thoughtSignature"] == wire.SKIP_SIGNATURE
    assert all("thoughtSignature" not in p for p in model_turn("gemini-2.5-flash"))

    # the signature Gemini gave a call, kept by its id, goes back in place of the sentinel
    kept = {"c1": {wire.SIGNATURE: "c2lnOnJlYWw="}, "other": {wire.SIGNATURE: "x"}}
    body = wire.request_body(ProviderCall(model="gemini-3-pro-preview", messages=turns, carried=kept))
    parts = body["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "c2lnOnJlYWw=" and "thoughtSignature" not in parts[1]
    body = wire.request_body(ProviderCall(model="gemini-2.5-flash", messages=turns, carried=kept))
    assert all("thoughtSignature" not in p for p in body["contents"][1]["parts"])


def test_a_replys_signatures_are_carried_by_fresh_tool_call_ids() -> None:
    """Gemini gives its calls no id: each gets one of its own (two answers' calls never share one), and
    the signature on a call's part is carried under it, for the executor to keep."""
    parts = [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]
    reply = wire.parse_reply(_response(parts, "STOP"), ProviderCall(model="gemini-3-pro", messages=()))
    again = wire.parse_reply(_response(parts, "STOP"), ProviderCall(model="gemini-3-pro", messages=()))
    first, second = reply.tool_calls
    assert len({first.id, second.id, *(c.id for c in again.tool_calls)}) == 4
    assert reply.carry == {first.id: {wire.SIGNATURE: "c2ln"}}


def test_an_answers_text_signature_is_carried_by_its_text_and_goes_back_on_it() -> None:
    """Gemini 3 signs an answer's text on its last part (a part of its own, or the text's last piece);
    a thought summary's or a function call's signature is not the text's. The signature is carried by a
    hash of the text, and goes back on that text when it comes back as an assistant turn, to Gemini 3
    only."""
    call = ProviderCall(model="gemini-3-pro", messages=())
    signed = wire.parse_reply(
        _response(
            [
                {"text": "Pondering.", "thought": True, "thoughtSignature": "dGhvdWdodA=="},
                {"text": "Paris."},
                {"text": "", "thoughtSignature": "dGV4dA=="},
            ],
            "STOP",
        ),
        call,
    )
    assert signed.content == "Paris."
    assert signed.carry == {text_id("Paris."): {wire.SIGNATURE: "dGV4dA=="}}
    on_text = wire.parse_reply(_response([{"text": "Rome.", "thoughtSignature": "cm9tZQ=="}], "STOP"), call)
    assert on_text.carry == {text_id("Rome."): {wire.SIGNATURE: "cm9tZQ=="}}
    thought_only = wire.parse_reply(
        _response([{"text": "Hm.", "thought": True, "thoughtSignature": "aG0="}, {"text": "Oslo."}], "STOP"),
        call,
    )
    assert thought_only.carry == {}

    history = [
        ChatMessage(role="user", content="Capital of France?"),
        ChatMessage(role="assistant", content="Paris."),
        ChatMessage(role="user", content="And of Italy?"),
    ]
    carried = dict(signed.carry)
    assert text_id("Paris.") in tool_call_ids(history)
    _, contents = wire.split_messages(history, signed=True, carried=carried)
    assert contents[1] == {"role": "model", "parts": [{"text": "Paris.", "thoughtSignature": "dGV4dA=="}]}
    _, unsigned = wire.split_messages(history, signed=False, carried=carried)  # Gemini 2 takes none
    assert unsigned[1] == {"role": "model", "parts": [{"text": "Paris."}]}
    edited = [history[0], ChatMessage(role="assistant", content="Paris!"), history[2]]
    _, contents = wire.split_messages(edited, signed=True, carried=carried)
    assert contents[1] == {"role": "model", "parts": [{"text": "Paris!"}]}


def _response(parts: list[dict[str, object]], finish: str | None, **extra: object) -> bytes:
    candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 3, "thoughtsTokenCount": 5}
    return orjson.dumps({"candidates": [candidate], "usageMetadata": usage, **extra})


CALL = ProviderCall(model="gemini-x", messages=(ChatMessage(role="user", content="q"),))


def test_replies_finish_reasons_and_thinking_tokens() -> None:
    reply = wire.parse_reply(
        _response(
            [{"text": "thinking...", "thought": True}, {"text": "Paris"}], "MAX_TOKENS", modelVersion="g-1"
        ),
        CALL,
    )
    assert (reply.content, reply.finish_reason, reply.model) == ("Paris", "length", "g-1")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 8)  # thoughts are output
    cut = wire.parse_reply(_response([{"text": "Some text"}], "SAFETY"), CALL)
    assert cut.finish_reason == "content_filter" and cut.content == "Some text"
    with pytest.raises(ProviderError) as blocked:
        wire.parse_reply(_response([], "SAFETY"), CALL)
    assert blocked.value.kind == "content_policy" and not blocked.value.retryable
    with pytest.raises(ProviderError) as malformed:
        wire.parse_reply(_response([], "MALFORMED_FUNCTION_CALL"), CALL)
    assert malformed.value.kind == "bad_response"


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", "auth"),
        (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", "bad_request"),
        (500, "INTERNAL", "An internal error has occurred.", "overloaded"),
        (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", "timeout"),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
            "context_too_long",
        ),
        (402, "RESOURCE_EXHAUSTED", "Your prepay credit balance is depleted.", "quota_exhausted"),
        (429, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted.", "quota_exhausted"),
        (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", "rate_limited"),  # a rate's quota
    ],
)
def test_error_bodies_map_to_the_taxonomy(status: int, code: str, message: str, kind: str) -> None:
    raw = orjson.dumps([{"error": {"code": status, "message": message, "status": code}}])  # array framing
    assert wire.error_from_body(status, raw).kind == kind


def test_a_retry_delay_in_the_details_is_honoured() -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37.5s"}]
    raw = orjson.dumps(
        {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": details}}
    )
    error = wire.error_from_body(429, raw)
    assert error.kind == "rate_limited" and error.retry_after == 37.5


@pytest.mark.parametrize(
    ("model", "reasoning", "config"),
    [
        ("gemini-2.5-flash", Reasoning(effort="high"), {"thinkingBudget": 24576}),
        ("gemini-2.5-flash", Reasoning(budget_tokens=40000), {"thinkingBudget": 24576}),
        ("my-proxy-model", Reasoning(effort="low"), {"thinkingBudget": 1024}),
        ("gemini-3.5-flash", Reasoning(effort="medium"), {"thinkingLevel": "medium"}),
        ("gemini-3.5-flash", Reasoning(effort="none"), {"thinkingLevel": "minimal"}),
        ("gemini-3.1-flash-lite", Reasoning(effort="max"), {"thinkingLevel": "high"}),
        ("gemini-3.1-flash-lite", Reasoning(budget_tokens=2048), {"thinkingLevel": "low"}),
        ("models/gemini-3.1-pro-preview", Reasoning(effort="medium"), {"thinkingLevel": "high"}),
        ("gemini-3.1-pro-preview", Reasoning(effort="minimal"), {"thinkingLevel": "low"}),
    ],
)
def test_gemini_3_gets_a_thinking_level_and_gemini_2_5_a_budget(
    model: str, reasoning: Reasoning, config: dict[str, Any]
) -> None:
    call = ProviderCall(model=model, messages=(ChatMessage(role="user", content="x"),), reasoning=reasoning)
    shown = {"includeThoughts": True} if reasoning.thinks() else {}  # summaries, when thinking is asked
    assert wire.request_body(call)["generationConfig"]["thinkingConfig"] == {**config, **shown}


def test_a_thought_summary_is_the_answers_thinking_unsigned() -> None:
    raw = orjson.dumps(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [{"text": "Paris is the capital.", "thought": True}, {"text": "Paris"}]
                    },
                    "finishReason": "STOP",
                }
            ]
        }
    )
    reply = wire.parse_reply(raw, ProviderCall(model="gemini-3.5-flash", messages=()))
    assert reply.content == "Paris"
    assert [(b.thinking, b.signature) for b in reply.thinking] == [("Paris is the capital.", "")]
