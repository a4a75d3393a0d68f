"""The chat face's content parts: which types are served, and each served part's fields typed as OpenAI
types them (a refusal names the field, as OpenAI's does)."""

from __future__ import annotations

from typing import Any, NoReturn

from switchyard.common.events import ChatMessage
from switchyard.gateway.documents import chat_file, in_user_turns_or_tool_results
from switchyard.gateway.errors import InvalidRequest, shown

# Content parts the chat face passes on: no model behind Switchyard is sent others (the Anthropic, Gemini and
# local adapters read text, images and PDFs only), so an `input_audio` part is refused, as the Responses
# face refuses `input_audio` and the Anthropic face `search_result` blocks, rather than dropped while the
# model answers without it.
SERVED_PARTS = ("text", "image_url", "file", "refusal")


def check_content_parts(messages: list[ChatMessage]) -> None:
    """400 `invalid_request` for a content part of a type not served; an assistant's `refusal` part becomes
    a text part, which every adapter reads; a `file` part (a PDF, in a user turn) is checked."""
    for n, message in enumerate(messages):
        if not isinstance(message.content, list):
            continue
        for m, part in enumerate(message.content):
            kind = part.get("type")
            if kind not in SERVED_PARTS:
                raise InvalidRequest(
                    f"messages.{n}.content.{m}: parts of type {shown(kind)} are not supported here (text, "
                    "image_url, file (a PDF) and an assistant's refusal are): no model behind this gateway "
                    "is sent audio",
                    param=f"messages.{n}.content.{m}",
                )
            _check_part_fields(part, f"messages.{n}.content.{m}")
            if kind == "refusal":
                message.content[m] = {"type": "text", "text": str(part.get("refusal", ""))}
            elif kind == "file":
                in_user_turns_or_tool_results(message.role, f"messages.{n}.content.{m}")
                message.content[m] = chat_file(part, f"messages.{n}.content.{m}")


def _check_part_fields(part: dict[str, Any], where: str) -> None:
    """A text part's `text` and an image part's `image_url.url` (and `detail`, when sent) are strings, as
    OpenAI types them; another type, or none, is refused naming the field, as OpenAI refuses it. Passed on,
    the adapters would send `text: null` as the text "None", or raise on an `image_url` string (a 502 for
    the client's mistake)."""
    if part.get("type") == "text":
        _string_in(part, "text", where, required=True)
    elif part.get("type") == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict):
            _refuse_type(image, f"{where}.image_url", "an object", missing="image_url" not in part)
        _string_in(image, "url", f"{where}.image_url", required=True)
        _string_in(image, "detail", f"{where}.image_url", required=False)


def _string_in(holder: dict[str, Any], name: str, where: str, *, required: bool) -> None:
    if name not in holder and not required:
        return
    if not isinstance(holder.get(name), str):
        _refuse_type(holder.get(name), f"{where}.{name}", "a string", missing=name not in holder)


def _refuse_type(value: object, param: str, expected: str, *, missing: bool) -> NoReturn:
    if missing:
        raise InvalidRequest(f"Missing required parameter: {param!r}", code="missing_field", param=param)
    got = "null" if value is None else type(value).__name__
    raise InvalidRequest(
        f"Invalid type for {param!r}: expected {expected}, but got {got} instead",
        code="invalid_type",
        param=param,
    )
