"""The Gemini face's refusals: what it does not deliver, refused by name; bad requests, each a 400 that names
the field by its Gemini path (never a 500); and which requests are answered in Google's shape at all."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchyard.gateway.errors import InvalidRequest, RequestTooLarge
from switchyard.gateway.errors_faces import google_face
from switchyard.gateway.gemini.request import parse_count_request, parse_request
from tests.unit.gateway.test_gemini_face import parse, refused, user


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"cachedContent": "cachedContents/1"}, "cachedContent"),
        ({"tools": [{"googleSearch": {}}]}, "tools.0.googleSearch"),
        ({"tools": [{"code_execution": {}}]}, "tools.0.code_execution"),
        ({"generationConfig": {"responseLogprobs": True}}, "generationConfig.responseLogprobs"),
        (
            {"generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}},
            "generationConfig.responseModalities",
        ),
        ({"generationConfig": {"responseMimeType": "text/x.enum"}}, "generationConfig.responseMimeType"),
        ({"generationConfig": {"speechConfig": {"voiceConfig": {}}}}, "generationConfig.speechConfig"),
    ],
)
def test_what_is_not_delivered_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    error = refused({"contents": [user("hi")], **extra})
    assert (error.code, error.param) == ("unsupported_parameter", param)


def test_other_bad_requests() -> None:
    both = {"thinkingConfig": {"thinkingBudget": 100, "thinkingLevel": "LOW"}}
    assert (
        refused({"contents": [user("hi")], "generationConfig": both}).param
        == "generationConfig.thinkingConfig"
    )
    schema_without_json = {"responseSchema": {"type": "STRING"}}
    error = refused({"contents": [user("hi")], "generationConfig": schema_without_json})
    assert error.param == "generationConfig.responseMimeType"
    assert refused({"contents": []}).param == "contents"
    assert refused({"contents": [{"role": "user", "parts": []}]}).param == "contents.0"
    assert (
        refused({"contents": [user("hi")], "generationConfig": {"temperature": "hot"}}).code == "invalid_type"
    )
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_request(b"{", model="auto", stream=False, max_prompt_chars=10)
    with pytest.raises(RequestTooLarge):
        parse({"contents": [user("x" * 101)]}, chars=100)


def test_only_a_post_to_a_model_method_under_v1_speaks_googles_shape() -> None:
    # an OpenAI client's GET /v1/models/{id} of a model whose id has a tag (Ollama's `llama3.2:latest`
    # behind the openai provider) is OpenAI's retrieve, not a Gemini method
    assert not google_face("/v1/models/openai/llama3.2:latest", keyed=False, method="GET")
    assert google_face("/v1/models/openai/llama3.2:latest", keyed=True, method="GET")  # a Google SDK's
    assert google_face("/v1/models/gemini-2.5-flash:generateContent", keyed=False, method="POST")
    assert google_face("/v1beta/models/gemini-2.5-flash", keyed=False, method="GET")
    assert not google_face("/v1/chat/completions", keyed=True, method="POST")


def test_a_request_the_chat_request_cannot_hold_is_a_400_not_a_500() -> None:
    # the model comes from the path, unchecked by the body's validation; a conversation of thoughts or of
    # an empty model turn leaves nothing to answer
    body = orjson.dumps({"contents": [user("hi")]})
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body, model="x" * 201, stream=False, max_prompt_chars=1000)
    assert caught.value.param == "model"
    for nothing in ({"text": ""}, {"text": "hmm", "thought": True}):
        empty = {"contents": [{"role": "model", "parts": [nothing]}]}
        assert refused(empty).param == "contents"
        with pytest.raises(InvalidRequest) as counted:
            parse_count_request(orjson.dumps(empty), model="auto")
        assert counted.value.param == "contents"
    # countTokens' `contents: []` was a ValidationError out of the request the parser built from it: a 500
    with pytest.raises(InvalidRequest) as counted:
        parse_count_request(b'{"contents": []}', model="auto")
    assert counted.value.param == "contents"


def test_a_thinking_budget_past_the_pipelines_limit_is_a_400_naming_it() -> None:
    huge = {"contents": [user("hi")], "generationConfig": {"thinkingConfig": {"thinkingBudget": 10**10}}}
    assert refused(huge).param == "generationConfig.thinkingConfig.thinkingBudget"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        (
            {"contents": [{"parts": [{"functionResponse": {"name": "f", "response": [1]}}]}]},
            "contents.0.parts.0.functionResponse.response",
        ),
        ({"systemInstruction": {"parts": [{"text": 5}]}}, "systemInstruction.parts.0.text"),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]},
            "contents.0.parts.0.inlineData.data",
        ),
    ],
)
def test_a_bad_field_deep_in_a_request_is_named_by_its_gemini_path(body: dict[str, Any], param: str) -> None:
    assert refused({"contents": [user("hi")], **body}).param == param


@pytest.mark.parametrize(
    ("part", "field"),
    [
        ({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}, "inlineData"),
        ({"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}}, "fileData"),
    ],
)
def test_an_image_in_a_model_turn_is_a_400_not_dropped(part: dict[str, Any], field: str) -> None:
    """An image model's answer kept in a chat's history: no model behind the gateway takes images in its
    own turns, and the next answer would otherwise miss it without a word."""
    model_turn = {"role": "model", "parts": [{"text": "Here it is:"}, part]}
    error = refused({"contents": [user("draw a cat"), model_turn, user("make it blue")]})
    assert (error.code, error.param) == ("unsupported_parameter", f"contents.1.parts.1.{field}")


@pytest.mark.parametrize(
    ("where", "param"),
    [("tools", "tools"), ("generationConfig", "generationConfig.responseJsonSchema")],
)
def test_a_schema_nested_deeper_than_the_bus_carries_is_a_400_not_a_recursion_error(
    where: str, param: str
) -> None:
    """A schema is rewritten level by level (`json_schema`); one of 500 levels (1,000 JSON levels, which the
    JSON reader takes) ran out of Python's stack: a 500. Anything past ~250 levels cannot be carried as a
    task anyway (`nesting_too_deep`)."""
    schema = b'{"type":"object","properties":{"a":' * 500 + b'{"type":"string"}' + b"}}" * 500
    if where == "tools":
        extra = b'"tools":[{"functionDeclarations":[{"name":"f","parametersJsonSchema":' + schema + b"}]}]"
    else:
        extra = (
            b'"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":' + schema + b"}"
        )
    body = b'{"contents":[{"role":"user","parts":[{"text":"a"}]}],' + extra + b"}"
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body, model="auto", stream=False, max_prompt_chars=100_000)
    assert (caught.value.code, caught.value.param) == ("nesting_too_deep", param)
