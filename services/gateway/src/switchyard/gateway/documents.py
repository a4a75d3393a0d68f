"""PDF documents as the faces read them: each face's document (chat's `file` part, the Responses API's
`input_file`, Anthropic's `document` block, Gemini's `inlineData`) becomes the pipeline's `file` part
(`switchyard.common.documents`), or a 400 naming the part and what is served instead."""

from __future__ import annotations

import binascii
from typing import Any

from switchyard.common.documents import PDF
from switchyard.gateway.errors import InvalidRequest


def pdf_part(*, media_type: Any, data: Any, filename: Any, at: str) -> dict[str, Any]:
    """The pipeline's part for a base64 PDF: only `application/pdf`, which every provider behind the
    gateway reads (400 `invalid_value` for another type, or data that is not base64)."""
    if media_type != PDF:
        raise InvalidRequest(
            f"{at}: documents of type {str(media_type)[:100]!r} are not served (application/pdf is)",
            code="invalid_value",
            param=at,
        )
    if not isinstance(data, str) or not data or not _is_base64(data):
        raise InvalidRequest(f"{at}: the document's data must be base64", code="invalid_value", param=at)
    if filename is not None and not isinstance(filename, str):
        raise InvalidRequest(f"{at}: the filename must be a string", code="invalid_type", param=at)
    file = {"file_data": f"data:{PDF};base64,{data}", **({"filename": filename} if filename else {})}
    return {"type": "file", "file": file}


def from_data_url(file_data: Any, filename: Any, at: str) -> dict[str, Any]:
    """OpenAI's `file_data` (chat's `file` part, the Responses API's `input_file`): a base64 data URL."""
    if not isinstance(file_data, str) or not file_data.startswith("data:") or ";base64," not in file_data:
        raise InvalidRequest(
            f"{at}: file_data must be a base64 data URL (data:application/pdf;base64,...)",
            code="invalid_value",
            param=at,
        )
    media, _, data = file_data[5:].partition(";base64,")
    return pdf_part(media_type=media, data=data, filename=filename, at=at)


def file_id_not_served(at: str) -> InvalidRequest:
    """A document by reference to OpenAI's Files API: those files are OpenAI's; the gateway's own Files API
    holds batch input only."""
    return InvalidRequest(
        f"{at}: files by file_id are not served (they live in OpenAI's Files API): send the PDF itself as "
        "file_data, a base64 data URL",
        code="unsupported_parameter",
        param=at,
    )


def _is_base64(data: str) -> bool:
    try:
        binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


def chat_file(part: dict[str, Any], at: str) -> dict[str, Any]:
    """Chat's `file` part, `{"type": "file", "file": {"file_data", "filename"}}`, checked and kept as it is
    (its other fields left out)."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise InvalidRequest(f"{at}.file: an object with file_data and filename", param=f"{at}.file")
    if file.get("file_id") is not None:
        raise file_id_not_served(f"{at}.file.file_id")
    return from_data_url(file.get("file_data"), file.get("filename"), f"{at}.file")


def in_user_turns_or_tool_results(role: str, at: str) -> None:
    """Documents belong to user turns and tool results, as the providers take them (a tool that reads a
    PDF returns it: Anthropic's tool_result takes document blocks, the Responses API's
    function_call_output input_file parts), not to a system prompt or an answer."""
    if role not in ("user", "tool"):
        raise InvalidRequest(
            f"{at}: documents are served in user turns and tool results only, not {role} ones", param=at
        )


def anthropic_document(fields: dict[str, Any], at: str) -> list[dict[str, Any]]:
    """Anthropic's `document` block as parts: a base64 PDF as a `file` part named by its `title`, a
    plain-text source as text parts (its title, then its text); its `context` a text part before it (the
    model reads it, and cites nothing: citations are not served). A URL, a Files API file or a
    content-block source is a 400 naming the source."""
    citations = fields.get("citations")
    if isinstance(citations, dict) and citations.get("enabled") is True:
        raise InvalidRequest(
            f"{at}.citations: citations are not served (answers come back as text, without citation "
            "blocks): send the document without them",
            code="unsupported_parameter",
            param=f"{at}.citations",
        )
    title, context = fields.get("title"), fields.get("context")
    for name, value in (("title", title), ("context", context)):
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{at}.{name}: a string", code="invalid_type", param=f"{at}.{name}")
    before = [{"type": "text", "text": context}] if context else []
    source = fields.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if isinstance(source, dict) and kind == "base64":
        document = pdf_part(
            media_type=source.get("media_type"), data=source.get("data"), filename=title, at=f"{at}.source"
        )
        return [*before, document]
    if isinstance(source, dict) and kind == "text":
        if source.get("media_type", "text/plain") != "text/plain" or not isinstance(source.get("data"), str):
            raise InvalidRequest(
                f"{at}.source: a text source has media_type text/plain and its text as data",
                code="invalid_value",
                param=f"{at}.source",
            )
        titled = [{"type": "text", "text": title}] if title else []
        return [*before, *titled, {"type": "text", "text": source["data"]}]
    if kind in ("url", "file", "content"):
        raise InvalidRequest(
            f"{at}.source: documents of source type {kind!r} are not served (a base64 PDF and a text source "
            "are): send the PDF itself, base64",
            code="unsupported_parameter",
            param=f"{at}.source",
        )
    raise InvalidRequest(
        f"{at}.source: a document needs a source of type base64 (a PDF) or text", param=f"{at}.source"
    )
