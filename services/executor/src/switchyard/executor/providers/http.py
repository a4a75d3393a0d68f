"""What the HTTP adapters share: a pooled client, Server-Sent Events, Retry-After, transport errors."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.errors import provider_error

DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
MAX_ERROR_BODY = 64 * 1024


def make_client(
    *, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = 100
) -> httpx.AsyncClient:
    """One pooled client per adapter. Keys go into each request's headers, never the client's defaults."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections // 4 or 1
        ),
        follow_redirects=False,
    )


def request_timeout(timeout_s: float | None, default_s: float) -> httpx.Timeout:
    total = timeout_s if timeout_s is not None else default_s
    return httpx.Timeout(total, connect=min(CONNECT_TIMEOUT_S, total))


def host_of(base_url: str) -> str:
    """The host (and port) of a URL: what a provider announcement may show, never a path or credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def retry_after(headers: httpx.Headers, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI), or `retry-after` in seconds or as an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now(), 0.0)


def parse_json(raw: bytes, *, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise provider_error("bad_response", f"{what} is not valid JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Server-Sent Events from a streamed response (the subset the providers use: `event:` and `data:`)."""
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SseEvent(event or "message", "\n".join(data))


@asynccontextmanager
async def transport_errors(provider: str) -> AsyncIterator[None]:
    """Maps httpx's and asyncio's failures into the taxonomy; ProviderErrors pass through untouched."""
    try:
        yield
    except ProviderError:
        raise
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise provider_error("timeout", f"{provider}: no answer in time ({type(exc).__name__})") from exc
    except httpx.DecodingError as exc:
        raise provider_error("bad_response", f"{provider}: undecodable response: {exc}") from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise provider_error("network", f"{provider}: {type(exc).__name__}: {exc}") from exc


async def read_error_body(response: httpx.Response) -> bytes:
    body = b""
    async for part in response.aiter_bytes():
        body += part
        if len(body) >= MAX_ERROR_BODY:
            break
    return body[:MAX_ERROR_BODY]


@asynccontextmanager
async def time_limit(timeout_s: float | None) -> AsyncIterator[None]:
    """The whole call's bound, on top of httpx's per-read timeouts (a server may trickle bytes forever)."""
    if timeout_s is None:
        yield
        return
    async with asyncio.timeout(timeout_s):
        yield
