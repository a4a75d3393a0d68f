"""What every fake provider server shares (`fake_openai`, `fake_anthropic`, `fake_gemini`): the request log
and per-model call counts (`Scenarios`), the model names read as failure scenarios the same way
(`flaky-<n>`, `limited-<n>`, `slow-<seconds>`), the default answer ("Hello! You said: <last user message>")
and its words, SSE framing, and the exception that drops a streamed body's connection."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

RETRY_AFTER_S = 1


def answer_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = users[-1].get("content", "") if users else ""
    if isinstance(last, list):
        last = " ".join(p.get("text", "") for p in last if p.get("type") == "text")
    return f"Hello! You said: {last}"


def long_words(model: str) -> int:
    """`long-<words>`: an answer of that many words (a word a token), as a model that writes at length."""
    return int(model.removeprefix("long-")) if model.startswith("long-") else 0


def long_answer(model: str, cap: object) -> tuple[str, bool]:
    """`long-<words>`'s answer, cut at the output cap the request sent (`cap`: its max_tokens, or the
    provider's name for it; None: none), as a provider cuts one; and whether it was cut."""
    wanted = long_words(model)
    said = wanted if cap is None else min(wanted, int(str(cap)))
    return " ".join(["word"] * said), said < wanted


def words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]]


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + payload + b"\n\n"


class ConnectionDropped(Exception):
    """Raised inside a streamed body: uvicorn then closes the connection without finishing the body."""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Scenarios:
    """Request log and per-model call counts, shared by the fake servers."""

    requests: list[Recorded] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)  # streams sent to their end, by model

    async def record(self, request: Request) -> tuple[dict[str, Any], str, int]:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        self.requests.append(Recorded(request.url.path, dict(request.headers), body))
        self.calls[model] += 1
        return body, model, self.calls[model]


def flaky_failures(model: str) -> int:
    return int(model.removeprefix("flaky-")) if model.startswith("flaky-") else 0


def limited_calls(model: str) -> int:
    return int(model.removeprefix("limited-")) if model.startswith("limited-") else 0


def slow_seconds(model: str) -> float:
    return float(model.removeprefix("slow-")) if model.startswith("slow-") else 0.0


def think_seconds(model: str) -> float:
    return float(model.removeprefix("think-")) if model.startswith("think-") else 0.0


def bomb_mib(model: str) -> int:
    """`bomb-<MiB>`: a whole answer (valid JSON) followed by that many MiB of spaces, sent gzipped (a few
    hundred KiB on the wire)."""
    return int(model.removeprefix("bomb-")) if model.startswith("bomb-") else 0


def long_line_mib(model: str) -> int:
    """`longline-<MiB>`: a stream whose first event's data line is padded with that many MiB of spaces
    (still valid JSON), the rest as usual."""
    return int(model.removeprefix("longline-")) if model.startswith("longline-") else 0


def gzip_bomb(answer: Any, mib: int) -> Response:
    body = gzip.compress(orjson.dumps(answer) + b" " * (mib * 2**20), compresslevel=1)
    return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})


async def first_line_padded(events: AsyncIterator[bytes], mib: int) -> AsyncIterator[bytes]:
    first = True
    async for event in events:
        if first:
            event, first = event.rstrip(b"\n") + b" " * (mib * 2**20) + b"\n\n", False
        yield event


# `html-200`: a proxy's page, answered 200 to any call
PROXY_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>upstream unavailable</body></html>"


def proxy_page() -> Response:
    return Response(PROXY_PAGE, media_type="text/html")
