"""PDF documents through the real pipeline (`tools_stack`: the gateway, router and executor as processes on a
real nats-server, each provider a local server speaking its protocol). A PDF sent on the chat face, the
Anthropic face and the Responses face skips the model that cannot read it and reaches each stand-in in its
provider's documented shape: Anthropic's `document` block, OpenAI chat's `file` part, the Responses API's
`input_file`, Gemini's `inlineData`."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from switchyard.common.events import TaskSubmitted
from tests.integration.executor.tools_stack import (
    WEATHER,
    Stack,
    anthropic_client,
    classifier,
    openai_client,
    stack,
)

pytestmark = pytest.mark.integration
__all__ = ["classifier", "stack"]  # fixtures

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
DATA = base64.b64encode(PDF).decode()
URL = f"data:application/pdf;base64,{DATA}"
ASK = "What does the document say?"


def _chat(model: str) -> dict[str, Any]:
    """What the Vercel AI SDK's `openai.chat(...)` sends for a PDF file part."""
    file = {"type": "file", "file": {"filename": "report.pdf", "file_data": URL}}
    return {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": ASK}, file]}]}


async def test_a_pdf_on_each_face_reaches_each_provider_in_its_own_shape(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    client = openai_client(stack)
    # The chat face, routed: the first model in the policy cannot read PDFs, the second (Anthropic's) can.
    routed = await client.chat.completions.create(**_chat("auto"))
    assert routed.model == "ant/tool-call"
    assert classifier[-1].request.messages[0].content[1]["file"]["file_data"] == URL  # type: ignore[index]
    document = stack.anthropic.requests[-1].body["messages"][0]["content"][1]
    assert document == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": DATA},
        "title": "report.pdf",
    }
    # Gemini's adapter sends the bytes inline.
    await client.chat.completions.create(**_chat("gem/tool-call"))
    parts = stack.gemini.requests[-1].body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "application/pdf", "data": DATA}}

    # The Anthropic face (its SDK, a base64 document block) to an OpenAI-compatible model: a file part.
    source = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    await anthropic_client(stack).messages.create(
        model="oai/tool-call",
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [{"type": "document", "source": source}, {"type": "text", "text": ASK}],
            }
        ],  # type: ignore[list-item,misc]
    )
    sent = stack.openai.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0]["content"][0] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": URL},  # OpenAI requires a filename
    }

    # The Responses face to GPT-6.1 Sol with a tool, which goes through OpenAI's Responses API upstream.
    tool = {"type": "function", **WEATHER["function"]}  # type: ignore[dict-item]
    item = {"type": "input_file", "filename": "report.pdf", "file_data": URL}
    response = await client.post(
        "/responses",
        cast_to=object,
        body={
            "model": "openai/gpt-6.1-sol",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": ASK}, item]}],
            "tools": [tool],
        },
    )
    assert isinstance(response, dict) and response["status"] == "completed"
    sent = stack.openai.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.body["input"][0]["content"][1] == item


async def test_a_document_no_model_can_read_is_refused_before_any_call(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """Naming the model that cannot read PDFs is a 400 naming the capability; nothing reaches a provider."""
    before = len(stack.openai.requests)
    headers = {"Authorization": f"Bearer {stack.org.keys['member']}"}
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as http:
        refused = await http.post("/v1/chat/completions", json=_chat("plain/model-a"), headers=headers)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "model_lacks_capability" and "pdf" in error["message"]
    assert len(stack.openai.requests) == before


async def test_a_pdf_a_tool_returned_and_one_from_google_genai_reach_the_providers(
    stack: Stack, classifier: list[TaskSubmitted]
) -> None:
    """A tool_result's document block (the Anthropic face) reaches an OpenAI-compatible model in a user
    message after the tool's, whose messages take text only; google-genai's URL-safe base64 (the Gemini
    face) reaches Anthropic as the standard base64 its sources take."""
    source = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "document", "source": source}],
    }
    await anthropic_client(stack).messages.create(
        model="oai/tool-call",
        max_tokens=50,
        tools=[{"name": "read", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "Read report.pdf"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}],
            },
            {"role": "user", "content": [result]},
        ],  # type: ignore[list-item,misc]
    )
    sent = stack.openai.requests[-1].body["messages"]
    assert sent[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": ""}
    assert sent[3]["content"][1] == {"type": "file", "file": {"filename": "document.pdf", "file_data": URL}}

    raw = b"%PDF-1.4\n\xfb\xff\xbf\xfe"  # base64 with '+' and '/': '-' and '_' as google-genai sends it
    pdf = {"inlineData": {"mimeType": "application/pdf", "data": base64.urlsafe_b64encode(raw).decode()}}
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as http:
        answered = await http.post(
            "/v1beta/models/ant/tool-call:generateContent",
            json={"contents": [{"role": "user", "parts": [pdf, {"text": ASK}]}]},
            headers={"x-goog-api-key": stack.org.keys["member"]},
        )
    assert answered.status_code == 200, answered.text
    document = stack.anthropic.requests[-1].body["messages"][0]["content"][0]
    assert document["source"]["data"] == base64.b64encode(raw).decode()
