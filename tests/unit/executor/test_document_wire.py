"""A PDF (the pipeline's `file` part) in each provider's documented request shape: OpenAI chat's `file`
part (with a filename, which OpenAI requires beside `file_data`), the Responses API's `input_file`,
Anthropic's `document` block with a base64 source, Gemini's `inlineData`; and its tokens (and an image's)
estimated wherever a prompt is estimated before the provider counts it."""

from __future__ import annotations

import pytest

from switchyard.common import documents
from switchyard.common.events import ChatMessage, ChatRequest, FunctionCall, ToolCall
from switchyard.common.media_tokens import media_tokens
from switchyard.executor.providers.anthropic import wire as anthropic_wire
from switchyard.executor.providers.base import ProviderCall, estimated_usage
from switchyard.executor.providers.gemini import wire as gemini_wire
from switchyard.executor.providers.openai import responses as openai_responses
from switchyard.executor.providers.openai import wire as openai_wire
from switchyard.executor.resilience.limits import prompt_tokens
from switchyard.gateway.budgets import pricing
from switchyard.gateway.guardrails.models import Refusal
from switchyard.gateway.guardrails.size import PromptSize
from tests.support import media

pytestmark = pytest.mark.unit

DATA = "JVBERi0xLjQKJcOkw7zDtsOfCg=="
URL = f"data:application/pdf;base64,{DATA}"
ASK = {"type": "text", "text": "Summarise it."}
MARK = {"type": "ephemeral"}


def _call(file: dict[str, str], **part: object) -> ProviderCall:
    message = ChatMessage(role="user", content=[ASK, {"type": "file", "file": file, **part}])
    return ProviderCall(model="m", messages=(message,))


def test_openai_chat_sends_the_file_part_with_a_filename() -> None:
    body = openai_wire.request_body(
        _call({"file_data": URL, "filename": "report.pdf"}, cache_control=MARK),
        stream=False,
        openai_itself=True,
    )
    assert body["messages"][0]["content"][1] == {
        "type": "file",
        "file": {"filename": "report.pdf", "file_data": URL},
    }
    unnamed = openai_wire.request_body(_call({"file_data": URL}), stream=False, openai_itself=False)
    assert unnamed["messages"][0]["content"][1]["file"] == {"filename": "document.pdf", "file_data": URL}


def test_the_responses_api_gets_an_input_file() -> None:
    items = openai_responses.input_items(_call({"file_data": URL, "filename": "report.pdf"}).messages)
    assert items == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Summarise it."},
                {"type": "input_file", "filename": "report.pdf", "file_data": URL},
            ],
        }
    ]


def test_anthropic_gets_a_document_block_titled_by_the_filename() -> None:
    _, messages = anthropic_wire.split_messages(
        list(_call({"file_data": URL, "filename": "report.pdf"}, cache_control=MARK).messages)
    )
    assert messages[0]["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": DATA},
        "title": "report.pdf",
        "cache_control": MARK,
    }
    _, unnamed = anthropic_wire.split_messages(list(_call({"file_data": URL}).messages))
    assert "title" not in unnamed[0]["content"][1]


def test_gemini_gets_the_pdf_inline() -> None:
    body = gemini_wire.request_body(_call({"file_data": URL, "filename": "report.pdf"}))
    assert body["contents"][0]["parts"] == [
        {"text": "Summarise it."},
        {"inlineData": {"mimeType": "application/pdf", "data": DATA}},
    ]


def _tool_result() -> ProviderCall:
    """A tool that returned a PDF (the Anthropic face's tool_result, the Responses face's
    function_call_output), answering call c1."""
    call = ToolCall(id="c1", function=FunctionCall(name="read", arguments="{}"))
    result = [{"type": "text", "text": "the file"}, {"type": "file", "file": {"file_data": URL}}]
    return ProviderCall(
        model="m",
        messages=(
            ChatMessage(role="user", content="Read it."),
            ChatMessage(role="assistant", content=None, tool_calls=[call]),
            ChatMessage(role="tool", tool_call_id="c1", content=result),
        ),
    )


def test_a_pdf_a_tool_returned_goes_where_each_provider_reads_it() -> None:
    """Anthropic: inside the tool_result; Gemini: beside the function response; OpenAI, whose tool
    messages take text only: in a user message right after the tool's, as a tool's images are."""
    named = {"type": "file", "file": {"filename": "document.pdf", "file_data": URL}}
    body = openai_wire.request_body(_tool_result(), stream=False, openai_itself=True)
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "the file"}
    assert body["messages"][3]["role"] == "user"
    assert body["messages"][3]["content"][1:] == [named]
    items = openai_responses.input_items(_tool_result().messages)
    assert items[-2] == {"type": "function_call_output", "call_id": "c1", "output": "the file"}
    assert items[-1]["content"][1:] == [{"type": "input_file", **named["file"]}]
    _, turns = anthropic_wire.split_messages(list(_tool_result().messages))
    assert turns[-1]["content"][0]["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": DATA},
    }
    parts = gemini_wire.request_body(_tool_result())["contents"][-1]["parts"]
    assert parts[1:] == [{"inlineData": {"mimeType": "application/pdf", "data": DATA}}]


def test_a_documents_tokens_are_estimated_from_its_size_everywhere() -> None:
    """Admission (budgets, rate limits, the prompt-size guardrail), the executor's rate limits and a usage
    the upstream did not report all count a document: a page per 25 KB, 3,000 tokens a page, one page at
    least, rather than nothing."""
    big = "A" * (4 * 100_000 // 3)  # 100 KB decoded: 4 pages
    call = _call({"file_data": f"data:application/pdf;base64,{big}"})
    small = _call({"file_data": URL})
    assert documents.document_tokens(call.messages) == 4 * documents.TOKENS_PER_PAGE
    assert documents.document_tokens(small.messages) == documents.TOKENS_PER_PAGE
    text_only = ProviderCall(model="m", messages=(ChatMessage(role="user", content=[ASK]),))
    assert prompt_tokens(call) == prompt_tokens(text_only) + 4 * documents.TOKENS_PER_PAGE
    assert estimated_usage(call, "").prompt_tokens == prompt_tokens(call)
    request = ChatRequest(messages=list(call.messages))
    bare = ChatRequest(messages=list(text_only.messages))
    assert pricing.prompt_tokens(request) == pricing.prompt_tokens(bare) + 4 * documents.TOKENS_PER_PAGE


def test_images_and_a_pdfs_real_pages_count_everywhere_a_prompt_is_estimated() -> None:
    """Admission (budgets, rate limits, the prompt-size guardrail), the executor's rate limits and a usage
    the upstream did not report count an image by its size (the most any provider's rule counts) and a
    PDF by its page tree, as the count endpoints and the router do. Before, an image counted nothing and
    a 12-page PDF of 10 KB one page."""
    shot = {"type": "image_url", "image_url": {"url": media.data_url("image/png", media.png(1000, 1000))}}
    pdf = {"type": "file", "file": {"file_data": media.data_url("application/pdf", media.pdf(12))}}
    message = ChatMessage(role="user", content=[ASK, shot, shot, pdf])
    call = ProviderCall(model="m", messages=(message,))
    text_only = ProviderCall(model="m", messages=(ChatMessage(role="user", content=[ASK]),))
    media_part = 2 * 1334 + 12 * documents.TOKENS_PER_PAGE
    assert media_tokens([message]) == media_part
    assert prompt_tokens(call) == prompt_tokens(text_only) + media_part
    assert estimated_usage(call, "").prompt_tokens == prompt_tokens(call)
    request = ChatRequest(messages=[message])
    bare = ChatRequest(messages=list(text_only.messages))
    assert pricing.prompt_tokens(request) == pricing.prompt_tokens(bare) + media_part
    with pytest.raises(Refusal):
        PromptSize(max_tokens=media_part).on_input([message])
