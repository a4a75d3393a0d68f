"""PDF documents on every face, as each provider's SDKs send them, read into the pipeline's one form (OpenAI
chat's `file` part, with the data URL and the filename the client gave), and the 400 for what cannot be
honoured: a file by reference or URL, another media type, data that is not base64, a document outside a
user turn, Anthropic's citations."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchyard.gateway import completions, messages, responses
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.gemini.request import parse_request as gemini_request

pytestmark = pytest.mark.unit

DATA = "JVBERi0xLjQKJcOkw7zDtsOfCg=="  # "%PDF-1.4\n%äüöß\n"
URL = f"data:application/pdf;base64,{DATA}"
PART = {"type": "file", "file": {"file_data": URL, "filename": "report.pdf"}}
UNNAMED = {"type": "file", "file": {"file_data": URL}}
ASK = {"type": "text", "text": "Summarise it."}


def chat(*parts: dict[str, Any], role: str = "user") -> list[Any]:
    body = {"model": "auto", "messages": [{"role": role, "content": [ASK, *parts]}]}
    return list(completions.parse_request(orjson.dumps(body), max_prompt_chars=1000).messages)


def respond(*parts: dict[str, Any], role: str = "user") -> list[Any]:
    body = {
        "model": "auto",
        "input": [{"role": role, "content": [{"type": "input_text", "text": "Hi"}, *parts]}],
    }
    return list(responses.parse_request(orjson.dumps(body), max_prompt_chars=1000).messages)


def anthropic(*blocks: dict[str, Any], role: str = "user") -> list[Any]:
    turns = [{"role": role, "content": [{"type": "text", "text": "Summarise it."}, *blocks]}]
    if role == "assistant":
        turns.insert(0, {"role": "user", "content": "Go on."})
    body = {"model": "auto", "max_tokens": 10, "messages": turns}
    return list(messages.parse_request(orjson.dumps(body), max_prompt_chars=1000).messages)


def gemini(*parts: dict[str, Any]) -> list[Any]:
    body = {"contents": [{"role": "user", "parts": [{"text": "Summarise it."}, *parts]}]}
    return list(
        gemini_request(orjson.dumps(body), model="auto", stream=False, max_prompt_chars=1000).request.messages
    )


def refused(read: Any, *parts: dict[str, Any], **kw: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        read(*parts, **kw)
    assert caught.value.status == 400
    return caught.value


def test_every_face_reads_a_pdf_into_the_pipelines_file_part() -> None:
    assert chat(PART)[0].content == [ASK, PART]
    assert chat(UNNAMED)[0].content[1] == UNNAMED
    read = respond({"type": "input_file", "filename": "report.pdf", "file_data": URL})
    assert read[-1].content[1] == PART
    source = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    assert anthropic({"type": "document", "source": source, "title": "report.pdf"})[-1].content[1] == PART
    assert gemini({"inlineData": {"mimeType": "application/pdf", "data": DATA}})[-1].content[1] == UNNAMED


def test_only_the_document_fields_the_pipeline_carries_are_kept() -> None:
    """Chat's part keeps file_data and filename; an Anthropic document's `context` is a text part before
    it, its cache mark stays on it, a text source is text (its title first)."""
    extra = {"type": "file", "file": {"file_data": URL, "filename": "report.pdf", "other": 1}, "x": 2}
    assert chat(extra)[0].content[1] == PART
    source = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    marked = {"type": "ephemeral"}
    block = {"type": "document", "source": source, "context": "Q3 figures", "cache_control": marked}
    assert anthropic(block)[-1].content[1:] == [
        {"type": "text", "text": "Q3 figures"},
        {**UNNAMED, "cache_control": marked},
    ]
    text = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Hello"},
        "title": "T",
    }
    assert anthropic(text)[-1].content[1:] == [
        {"type": "text", "text": "T"},
        {"type": "text", "text": "Hello"},
    ]
    off = {"type": "document", "source": source, "citations": {"enabled": False}}
    assert anthropic(off)[-1].content[1] == UNNAMED


SOURCE = {"type": "base64", "media_type": "application/pdf", "data": DATA}
C1, I1 = "messages.0.content.1", "input.0.content.1"
UNSUPPORTED, INVALID = "unsupported_parameter", "invalid_value"


def file(**fields: str) -> dict[str, Any]:
    return {"type": "file", "file": fields}


def input_file(**fields: str) -> dict[str, Any]:
    return {"type": "input_file", **fields}


def document(source: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "document", "source": source, **fields}


@pytest.mark.parametrize(
    ("read", "part", "param", "code"),
    [
        (chat, file(file_id="file-abc"), f"{C1}.file.file_id", UNSUPPORTED),
        (chat, file(file_data="data:text/plain;base64,SGk=", filename="a.txt"), f"{C1}.file", INVALID),
        (chat, file(file_data=DATA, filename="a.pdf"), f"{C1}.file", INVALID),  # not a data URL
        (chat, file(file_data="data:application/pdf;base64,%%%"), f"{C1}.file", INVALID),
        (respond, input_file(file_id="file-abc"), f"{I1}.file_id", UNSUPPORTED),
        (respond, input_file(file_url="https://x/a.pdf"), f"{I1}.file_url", UNSUPPORTED),
        (respond, input_file(file_data=URL, detail="high"), f"{I1}.detail", UNSUPPORTED),
        (respond, input_file(file_data="data:image/png;base64,iVBORw0KGgo="), I1, INVALID),
        # Anthropic's document errors name the block's full path, as every other face's do (they named
        # `document.source`, relative to a block the client could not tell among a conversation's)
        (anthropic, document({"type": "url", "url": "https://x/a.pdf"}), f"{C1}.source", UNSUPPORTED),
        (anthropic, document({"type": "file", "file_id": "file_1"}), f"{C1}.source", UNSUPPORTED),
        (anthropic, document(SOURCE, citations={"enabled": True}), f"{C1}.citations", UNSUPPORTED),
        (anthropic, document({**SOURCE, "media_type": "image/png"}), f"{C1}.source", INVALID),
        (
            gemini,
            {"inlineData": {"mimeType": "application/pdf", "data": "not base64!"}},
            "contents.0.parts.1.inlineData",
            INVALID,
        ),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_part(
    read: Any, part: dict[str, Any], param: str, code: str
) -> None:
    error = refused(read, part)
    assert (error.param, error.code) == (param, code)


def test_documents_belong_to_user_turns_and_tool_results() -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    assert "user turns and tool results only" in refused(chat, PART, role="assistant").message
    assert (
        "user turns and tool results only"
        in refused(respond, {"type": "input_file", "file_data": URL}, role="system").message
    )
    assert (
        "user turns and tool results only"
        in refused(anthropic, {"type": "document", "source": source}, role="assistant").message
    )


def test_a_tool_result_may_return_a_pdf() -> None:
    """Anthropic's tool_result takes document blocks (a tool that reads a PDF returns it so), the Responses
    API's function_call_output input_file parts: the tool message carries the PDF as a `file` part (the
    adapters put it where each provider reads it)."""
    source = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    result = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [
            {"type": "text", "text": "the file"},
            {"type": "document", "source": source, "title": "a.pdf"},
        ],
    }
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]}
    body = {
        "model": "auto",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "Read"}, call, {"role": "user", "content": [result]}],
    }
    tool = messages.parse_request(orjson.dumps(body), max_prompt_chars=1000).messages[-1]
    named = {"type": "file", "file": {"file_data": URL, "filename": "a.pdf"}}
    assert (tool.role, tool.content) == ("tool", [{"type": "text", "text": "the file"}, named])
    items = [
        {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": [{"type": "input_file", "filename": "a.pdf", "file_data": URL}],
        },
    ]
    body = {"model": "auto", "input": items}
    tool = responses.parse_request(orjson.dumps(body), max_prompt_chars=1000).messages[-1]
    assert (tool.role, tool.content) == ("tool", [named])


def test_an_anthropic_documents_error_names_its_block_where_it_is() -> None:
    """Its full path: the turn, and the block's place in it (thinking blocks before it counted, and a
    document in a tool result under the result's content)."""
    thinking = {"type": "thinking", "thinking": "hm", "signature": "s"}
    bad = document({"type": "url", "url": "https://x/a.pdf"})
    assert refused(anthropic, thinking, bad, role="assistant").param == "messages.1.content.2"
    result = {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a"}, bad]}
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]}
    body = {"model": "auto", "max_tokens": 9, "messages": [{"role": "user", "content": "Read"}, call]}
    body["messages"].append({"role": "user", "content": [result]})
    with pytest.raises(InvalidRequest) as caught:
        messages.parse_request(orjson.dumps(body), max_prompt_chars=1000)
    assert caught.value.param == "messages.2.content.0.content.1.source"
