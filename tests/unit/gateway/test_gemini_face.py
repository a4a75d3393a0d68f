"""The Gemini face's reading of Google's requests (the shapes the Gemini CLI and the Python GenAI SDK send,
captured from them) into the pipeline's chat request: the conversation, function calls and their responses,
images, tools, thinking, JSON answers, model names, counts and embeddings. Its refusals of what it cannot
deliver or read are in test_gemini_refusals.py, its answers in test_gemini_render.py."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from switchyard.common.events import ChatRequest
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.gemini.request import (
    Parsed,
    model_name,
    parse_count_request,
    parse_embeddings,
    parse_request,
)
from switchyard.gateway.gemini.schema import json_schema

SCORE_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "complexity_reasoning": {"type": "STRING", "description": "Brief explanation for the score."},
        "complexity_score": {"type": "INTEGER", "description": "Complexity score from 1-100."},
    },
    "required": ["complexity_reasoning", "complexity_score"],
}
# What the Gemini CLI 0.61 sends for its routing classifier (captured; texts shortened).
CLI_REQUEST: dict[str, Any] = {
    "contents": [
        {
            "parts": [{"text": "<session_context>\nThis is the Gemini CLI.\n</session_context>"}],
            "role": "user",
        },
        {"parts": [{"text": "say hi"}], "role": "user"},
    ],
    "systemInstruction": {"parts": [{"text": "You are a specialized Task Routing AI."}], "role": "user"},
    "generationConfig": {
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "responseMimeType": "application/json",
        "responseJsonSchema": SCORE_SCHEMA,
        "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "HIGH"},
    },
}


def parse(body: dict[str, Any], *, stream: bool = False, chars: int = 100_000) -> Parsed:
    return parse_request(orjson.dumps(body), model="auto", stream=stream, max_prompt_chars=chars)


def refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    return caught.value


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def test_the_gemini_clis_request_reads_as_a_chat_request() -> None:
    parsed = parse(CLI_REQUEST)
    request = parsed.request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "You are a specialized Task Routing AI."),
        ("user", "<session_context>\nThis is the Gemini CLI.\n</session_context>"),
        ("user", "say hi"),
    ]
    assert (request.temperature, request.top_p, request.n) == (1, 0.95, 1)  # topK accepted, not passed on
    assert request.response_format == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {
                "type": "object",
                "properties": {
                    "complexity_reasoning": {
                        "type": "string",
                        "description": "Brief explanation for the score.",
                    },
                    "complexity_score": {"type": "integer", "description": "Complexity score from 1-100."},
                },
                "required": ["complexity_reasoning", "complexity_score"],
            },
            "strict": False,
        },
    }
    reasoning = request.reasoning()
    assert reasoning is not None and reasoning.effort == "high"
    assert parsed.thoughts is True


def test_snake_case_fields_as_the_python_sdk_sends_them() -> None:
    body = {
        "contents": [user("a person")],
        "generationConfig": {
            "maxOutputTokens": 50,
            "thinkingConfig": {"thinking_budget": 0},
            "responseMimeType": "application/json",
            "responseSchema": {
                "properties": {"name": {"title": "Name", "type": "STRING", "nullable": True}},
                "property_ordering": ["name"],
                "required": ["name"],
                "type": "OBJECT",
            },
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather of a city.",
                        "parameters_json_schema": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    }
                ]
            }
        ],
    }
    request = parse(body).request
    assert request.max_tokens == 50
    reasoning = request.reasoning()
    assert reasoning is not None and reasoning.effort == "none"  # no thinking, said out loud
    assert request.response_format is not None
    assert request.response_format["json_schema"]["schema"] == {
        "properties": {"name": {"title": "Name", "type": ["string", "null"]}},
        "required": ["name"],
        "type": "object",
    }
    assert request.tools is not None and request.tools[0].function.name == "get_weather"
    assert request.tools[0].function.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
    }
    assert request.tool_choice is None


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"thinkingBudget": -1}, {"adaptive": True}),
        ({"thinkingBudget": 512}, {"budget_tokens": 1024}),  # Claude's least
        ({"thinkingBudget": 8000, "includeThoughts": False}, {"budget_tokens": 8000}),
        ({"thinkingLevel": "low"}, {"effort": "low"}),
    ],
)
def test_thinking_in_the_pipelines_terms(thinking: dict[str, Any], expected: dict[str, Any]) -> None:
    parsed = parse({"contents": [user("hi")], "generationConfig": {"thinkingConfig": thinking}})
    reasoning = parsed.request.reasoning()
    assert reasoning is not None
    assert {k: getattr(reasoning, k) for k in expected} == expected
    assert parsed.thoughts is False


def test_a_tool_loop_without_ids_pairs_responses_with_calls_by_name() -> None:
    body = {
        "contents": [
            user("weather in Paris and Rome?"),
            {
                "role": "model",
                "parts": [
                    {"text": "Checking.", "thought": True, "thoughtSignature": "c2ln"},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2ln",
                    },
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"error": "no station"}}},
                ],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}],
    }
    messages = parse(body).request.messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool"]
    calls = messages[1].tool_calls or []
    assert messages[1].content is None  # the thought summary is not the conversation's
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        ("call_1_0", "get_weather", {"city": "Paris"}),
        ("call_1_1", "get_weather", {"city": "Rome"}),
    ]
    assert [(m.tool_call_id, m.content) for m in messages[2:]] == [
        ("call_1_0", "sunny"),
        ("call_1_1", "no station"),
    ]
    assert (messages[2].model_extra or {}).get("is_error") is None
    assert (messages[3].model_extra or {})["is_error"] is True  # an `error` response: a failed call


def test_a_tool_loop_with_ids_keeps_them_and_other_responses_go_as_json() -> None:
    body = {
        "contents": [
            user("files?"),
            {"role": "model", "parts": [{"functionCall": {"id": "fc_9", "name": "ls", "args": {}}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "fc_9", "name": "ls", "response": {"files": ["a", "b"]}}},
                    {"text": "and then?"},
                ],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "ls"}]}],
    }
    messages = parse(body).request.messages
    assert [(m.role, m.tool_call_id, m.content) for m in messages[2:]] == [
        ("tool", "fc_9", '{"files":["a","b"]}'),
        ("user", None, "and then?"),
    ]


def test_a_streamed_answer_kept_as_one_model_content_per_chunk_is_one_assistant_message() -> None:
    # Google's SDKs' chats keep each streamed chunk's content as its own model turn in the history they
    # send back (the JS SDK 2.32 and the Python SDK 3.6, seen against the gateway), the last one empty
    def model(*parts: dict[str, Any]) -> dict[str, Any]:
        return {"role": "model", "parts": list(parts)}

    call = {"functionCall": {"name": "ls", "args": {"path": "."}}}
    body = {
        "contents": [
            user("one"),
            model({"text": "Hello! "}),
            model({"text": "You said one."}),
            model({"text": ""}),
            user("files?"),
            model({"text": "Thinking.", "thought": True}),
            model({"text": "Let me look."}),
            model(call),
            model({"text": ""}),
            {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"output": "a b"}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "ls"}]}],
    }
    messages = parse(body).request.messages
    assert [(m.role, m.content) for m in messages] == [
        ("user", "one"),
        ("assistant", "Hello! You said one."),
        ("user", "files?"),
        ("assistant", "Let me look."),
        ("tool", "a b"),
    ]
    assert [(c.id, c.function.name) for c in messages[3].tool_calls or []] == [("call_5_0", "ls")]
    assert messages[4].tool_call_id == "call_5_0"
    # a model turn with nothing in it is no assistant message (a provider refuses an empty one)
    assert [
        m.role for m in parse({"contents": [user("a"), model({"text": ""}), user("b")]}).request.messages
    ] == [
        "user",
        "user",
    ]


def test_function_calls_and_responses_must_pair_up() -> None:
    call = {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}}}]}
    tools = [{"functionDeclarations": [{"name": "ls"}]}]
    unanswered = refused({"contents": [user("files?"), call, user("never mind")], "tools": tools})
    assert unanswered.param == "contents.2" and "call_1_0" in unanswered.message
    stray = {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {}}}]}
    orphan = refused({"contents": [user("files?"), stray], "tools": tools})
    assert orphan.param == "contents.1.parts.0" and "answers no function call" in orphan.message
    wrong_id = {"role": "user", "parts": [{"functionResponse": {"id": "x", "name": "ls", "response": {}}}]}
    assert (
        refused({"contents": [user("files?"), call, wrong_id], "tools": tools}).param == "contents.2.parts.0"
    )


def test_the_function_calling_modes() -> None:
    tools = [{"functionDeclarations": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}]
    base = {"contents": [user("go")], "tools": tools}

    def choice(config: dict[str, Any]) -> tuple[Any, list[str]]:
        request = parse({**base, "toolConfig": {"functionCallingConfig": config}}).request
        return request.tool_choice, [t.function.name for t in request.tools or []]

    assert choice({"mode": "AUTO"}) == (None, ["a", "b", "c"])
    assert choice({"mode": "VALIDATED"}) == (None, ["a", "b", "c"])
    assert choice({"mode": "NONE"}) == ("none", ["a", "b", "c"])
    assert choice({"mode": "ANY"}) == ("required", ["a", "b", "c"])
    assert choice({"mode": "any", "allowedFunctionNames": ["b", "c"]}) == ("required", ["b", "c"])
    assert choice({"mode": "ANY", "allowedFunctionNames": ["b"]}) == (
        {"type": "function", "function": {"name": "b"}},
        ["b"],
    )
    unknown = refused(
        {**base, "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["z"]}}}
    )
    assert unknown.param == "toolConfig.functionCallingConfig.allowedFunctionNames"
    # bounded as the declarations are (a list of millions was read whole and echoed in the message)
    many = [f"f{n}" for n in range(129)]
    too_many = refused(
        {**base, "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": many}}}
    )
    assert too_many.param == "toolConfig.functionCallingConfig.allowedFunctionNames"
    named = refused(
        {**base, "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": many[:9]}}}
    )
    assert "'f0', 'f1', 'f2', 'f3', 'f4'] and more are not declared" in str(named)


def test_images_and_pdfs_are_read_and_other_inputs_refused() -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    request = parse({"contents": [{"role": "user", "parts": [{"text": "what is it?"}, image]}]}).request
    assert request.messages[0].content == [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    by_url = {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}
    request = parse({"contents": [{"parts": [by_url]}]}).request
    assert request.messages[0].content == [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    ]
    pdf = {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
    request = parse({"contents": [{"parts": [pdf]}]}).request
    assert request.messages[0].content == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}
    ]
    audio = {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}
    assert "audio/wav" in refused({"contents": [{"parts": [audio]}]}).message
    pdf_by_url = {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}}
    assert "application/pdf" in refused({"contents": [{"parts": [pdf_by_url]}]}).message
    files_api = {"fileData": {"mimeType": "image/png", "fileUri": "files/abc123"}}
    assert "Files API" in refused({"contents": [{"parts": [files_api]}]}).message


def test_inline_data_in_url_safe_base64_is_read_as_standard_base64() -> None:
    """google-genai's `Part.from_bytes` sends bytes as pydantic serialises them, URL-safe base64 (`-`, `_`),
    which Gemini's JSON (proto3 bytes: either alphabet, padded or not) takes; OpenAI's data URLs and
    Anthropic's sources are standard base64, and the face's check refused the PDF (400 `invalid_value`)."""
    raw = b"%PDF-1.4\n\xfb\xff\xbf\xfe"  # bytes whose base64 has '+' and '/'
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode()
    assert url_safe != standard
    for data in (url_safe, url_safe.rstrip("=")):
        pdf = {"inlineData": {"mimeType": "application/pdf", "data": data}}
        image = {"inlineData": {"mimeType": "image/png", "data": data}}
        request = parse({"contents": [{"parts": [pdf, image]}]}).request
        assert request.messages[0].content == [
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{standard}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{standard}"}},
        ]


def test_a_pdf_in_a_model_turn_is_refused_as_the_other_faces_refuse_one() -> None:
    """A model turn's inline PDF was left out without a word (the model answered without it); chat,
    Responses and Anthropic refuse a document in an answer with a 400 naming it, and so does this face."""
    pdf = {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
    contents = [
        {"role": "user", "parts": [{"text": "summarise"}]},
        {"role": "model", "parts": [{"text": "here it is"}, pdf]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]
    error = refused({"contents": contents})
    assert error.param == "contents.1.parts.1.inlineData"
    assert "user turns and tool results only" in error.message


def test_a_function_responses_parts_are_its_tool_messages_images_and_pdfs() -> None:
    """Gemini 3's multimodal function responses (google-genai's `FunctionResponse.parts`: inline images and
    PDFs a function returned) were left out without a word; they are the tool message's parts, which every
    adapter sends where its provider reads a tool's images and PDFs."""
    pdf = {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    answer = {"name": "read", "response": {"output": "the file"}, "parts": [pdf, image]}
    contents = [
        {"role": "user", "parts": [{"text": "read it"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "read", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": answer}]},
    ]
    tool = parse({"contents": contents}).request.messages[-1]
    assert (tool.role, tool.content) == (
        "tool",
        [
            {"type": "text", "text": "the file"},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    )
    audio = {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}
    contents[2] = {"role": "user", "parts": [{"functionResponse": {**answer, "parts": [audio]}}]}
    assert refused({"contents": contents}).param == "contents.2.parts.0.functionResponse.parts.0"


def test_model_names() -> None:
    aliases = {"gemini-3.5-flash-lite": "auto"}
    assert model_name("models/gemini-2.5-flash", aliases) == "gemini/gemini-2.5-flash"
    assert model_name("gemini-2.5-flash", aliases) == "gemini/gemini-2.5-flash"
    assert model_name("gemini-3.5-flash-lite", aliases) == "gemini-3.5-flash-lite"  # an alias: as it is
    assert model_name("auto", aliases) == "auto"
    assert model_name("local/smollm2-135m-instruct", aliases) == "local/smollm2-135m-instruct"
    for empty in ("models/", "models/ ", ""):  # POST /v1beta/models/models/:generateContent
        with pytest.raises(InvalidRequest) as caught:
            model_name(empty, aliases)
        assert caught.value.param == "model" and "no model" in caught.value.message


def test_schemas_keep_the_clients_names_and_values() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "type": {"type": "STRING", "enum": ["RED", "GREEN"]},
            "TAGS": {"type": "ARRAY", "items": {"type": "STRING"}, "min_items": 1},
            "maybe": {"anyOf": [{"type": "INTEGER"}], "nullable": True},
        },
        "example": {"type": "RED"},
    }
    assert json_schema(schema, param="tools") == {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["RED", "GREEN"]},
            "TAGS": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    }


def test_count_and_embedding_requests() -> None:
    counted = parse_count_request(orjson.dumps({"contents": [user("hello there")]}), model="auto")
    assert isinstance(counted, ChatRequest) and counted.messages[0].content == "hello there"
    whole = {
        "generateContentRequest": {"contents": [user("hi")], "systemInstruction": {"parts": [{"text": "s"}]}}
    }
    assert [m.role for m in parse_count_request(orjson.dumps(whole), model="auto").messages] == [
        "system",
        "user",
    ]
    with pytest.raises(InvalidRequest, match="either"):
        parse_count_request(b"{}", model="auto")

    batch = {
        "requests": [
            {
                "model": "models/m",
                "content": {"parts": [{"text": "a"}, {"text": "b"}]},
                "outputDimensionality": 8,
            },
            {"model": "models/m", "content": {"parts": [{"text": "c"}]}, "outputDimensionality": 8},
        ]
    }
    embeddings = parse_embeddings(
        orjson.dumps(batch), model="local/m", path_model="m", batch=True, max_prompt_chars=99
    )
    assert (embeddings.model, embeddings.inputs, embeddings.dimensions) == ("local/m", ["a\nb", "c"], 8)
    one = parse_embeddings(
        orjson.dumps({"content": {"parts": [{"text": "x"}]}}),
        model="m",
        path_model="m",
        batch=False,
        max_prompt_chars=9,
    )
    assert one.inputs == ["x"] and one.dimensions is None
    other_model = {"requests": [{"model": "models/n", "content": {"parts": [{"text": "a"}]}}]}
    with pytest.raises(InvalidRequest, match="model of its path"):
        parse_embeddings(orjson.dumps(other_model), model="m", path_model="m", batch=True, max_prompt_chars=9)
    lengths = {"requests": [{**batch["requests"][0], "outputDimensionality": 4}, batch["requests"][1]]}
    with pytest.raises(InvalidRequest, match="same outputDimensionality"):
        parse_embeddings(orjson.dumps(lengths), model="m", path_model="m", batch=True, max_prompt_chars=9)
    # longer than a task holds (as the OpenAI face's `dimensions`) was a ValidationError building the task
    too_long = {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 65537}
    with pytest.raises(InvalidRequest) as refused:
        parse_embeddings(orjson.dumps(too_long), model="m", path_model="m", batch=False, max_prompt_chars=9)
    assert refused.value.param == "outputDimensionality"
