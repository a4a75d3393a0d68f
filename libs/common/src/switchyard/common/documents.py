"""Documents (PDFs) in a conversation, in the pipeline's form: OpenAI chat's `file` content part,
`{"type": "file", "file": {"file_data": "data:application/pdf;base64,...", "filename": "..."}}` (the
filename only when the client gave one). Every face reads a PDF into this form and every adapter that
sends one writes its provider's; the router sends them only to models with the `pdf` capability.

No tokenizer reads a PDF here: a document's tokens are its pages (read from its page tree, bounded:
`media.pdf_pages`), each `TOKENS_PER_PAGE` (Anthropic counts 1,500-3,000 tokens a page, its text and its
image) or the provider's own figure (`media_tokens`); a PDF whose page tree is out of sight is taken to
have a page per `BYTES_PER_PAGE` bytes, generously (small pages make more of them). The count endpoints,
the budgets and rate limits that admit a request before it runs and the router's context-window check
all count a document so; budgets and limits settle to the provider's usage afterwards."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from switchyard.common.events import ChatMessage
from switchyard.common.media import Base64Bytes, payload, pdf_pages

PDF = "application/pdf"
BYTES_PER_PAGE = 25_000
TOKENS_PER_PAGE = 3_000


def documents(message: ChatMessage) -> list[dict[str, Any]]:
    """The message's document parts (`file` parts), in order."""
    if not isinstance(message.content, list):
        return []
    return [p for p in message.content if p.get("type") == "file"]


def has_documents(messages: Iterable[ChatMessage]) -> bool:
    return any(documents(m) for m in messages)


def data_url(part: dict[str, Any]) -> str:
    """A document part's `file_data`: a data URL."""
    file = part.get("file")
    return str(file.get("file_data", "")) if isinstance(file, dict) else ""


def filename(part: dict[str, Any]) -> str | None:
    """The name the client gave the document, if it gave one."""
    file = part.get("file")
    name = file.get("filename") if isinstance(file, dict) else None
    return name if isinstance(name, str) and name else None


def media_and_data(part: dict[str, Any]) -> tuple[str, str]:
    """A document part's media type and base64 data, from its data URL (the faces made sure it is one)."""
    url = data_url(part)
    media, _, data = url.removeprefix("data:").partition(";base64,")
    return media, data


def pages(part: dict[str, Any]) -> int:
    """A document's pages: from its page tree, else estimated from its decoded size (one at least)."""
    data = payload(data_url(part)) or Base64Bytes("")
    return pdf_pages(data) or max(1, math.ceil(data.size / BYTES_PER_PAGE))


def document_tokens(messages: Iterable[ChatMessage], *, per_page: int = TOKENS_PER_PAGE) -> int:
    """The documents' estimated tokens: their pages, each `per_page`."""
    return sum(pages(part) * per_page for message in messages for part in documents(message))
