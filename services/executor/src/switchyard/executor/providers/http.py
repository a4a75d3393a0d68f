"""What the HTTP adapters share: a pooled client, Server-Sent Events, Retry-After, transport errors, and
the call itself (`HttpProvider`)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.cookiejar
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import SecretStr

from switchyard.common import vectors
from switchyard.common.errors import ProviderError
from switchyard.common.logs import redact
from switchyard.executor.providers.base import ProviderCall, Reply, StreamPart, reply_parts
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.tool_names import NameRule, ToolNames
from switchyard.executor.providers.transport import PROXY_REFUSED, AiohttpTransport

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
MAX_ERROR_BODY = 64 * 1024
# A whole answer's body, as decoded (`Content-Encoding`: a few KiB of gzip may hold gigabytes), and one line
# of a stream. The largest real ones: a chat answer of 128 choices, a Responses stream's last event holding
# the whole answer with its encrypted reasoning (a few MiB). Past them the call fails `bad_response`
# instead of the executor holding the body (its pod has 1.5 GiB) or, for a line, copying it again at every
# network read (200 MiB took 2 minutes of CPU on the event loop).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_LINE_BYTES = 32 * 1024 * 1024
# An embeddings answer: as many vectors as one result holds (vectors.MAX_RESULT_BYTES of float32), written
# as JSON numbers (up to ~22 characters for 4 bytes) by a server that sends no base64.
MAX_EMBEDDINGS_BYTES = 6 * vectors.MAX_RESULT_BYTES
FINISH_BODY_S = 1.0
MAX_CACHED_URLS = 256  # paths per adapter (Gemini's hold the model name)
JSON_HEADERS = {"Content-Type": "application/json"}
# The media types of a streamed call's 200 that is not an event stream (every provider labels its streams
# text/event-stream): a JSON document, or a proxy's HTML page.
NOT_EVENTS = frozenset({"application/json", "text/html"})
# Connections per adapter: as many as the tasks one replica runs at once (`SWITCHYARD_EXECUTOR_CONCURRENCY`,
# 256), so calls to one provider wait for the provider, not for a connection.
MAX_CONNECTIONS = 256


def make_client(
    *, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
) -> httpx.AsyncClient:
    """One pooled client per adapter, its calls sent through aiohttp's pool (`transport.py`). Keys go into
    each request's headers, never the client's defaults. No cookies: httpx's client would keep what a
    provider (or a load balancer in front of it) sets and send it on every later call, of any tenant."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        cookies=http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
        transport=AiohttpTransport(max_connections=max_connections),
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


def finite(value: Any) -> TypeGuard[float]:
    """A JSON number, and a finite one (`true` is not one, though Python's bool is an int)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def parse_json(raw: bytes, *, what: str) -> Any:
    """`raw` as JSON; `bad_response` saying what was not, the parser's words to the log only."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        log.info("%s is not valid JSON: %s (%d bytes)", what, exc, len(raw))
        raise provider_error("bad_response", f"{what} is not valid JSON") from exc


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Server-Sent Events from a streamed response (the subset the providers use: `event:` and `data:`)."""
    event = ""
    data: list[str] = []
    async for line in _lines(response):
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


async def _lines(response: httpx.Response, *, limit: int = MAX_LINE_BYTES) -> AsyncIterator[str]:
    """The body's lines, split on the raw bytes (CRLF, LF or CR, as the SSE format allows) and decoded one
    by one as UTF-8, which the format mandates: cheaper than httpx's text and line decoders, which every
    event of a stream went through. A line longer than `limit` fails the stream (`bad_response`); an
    unterminated line grows in place, read once, however many parts bring it."""
    pending = bytearray()
    async for part in response.aiter_bytes():
        if b"\n" not in part and b"\r" not in part and not pending.endswith(b"\r"):
            pending += part  # the middle of a line: no line end to look for
        else:
            pending += part
            lines = bytes(pending).splitlines(keepends=True)
            # An unterminated last line, or one ending in CR (half of a CRLF?), waits for the next part.
            pending = bytearray(lines.pop() if lines and not lines[-1].endswith(b"\n") else b"")
            for raw in lines:
                yield raw.rstrip(b"\r\n").decode("utf-8", "replace")
        if len(pending) > limit:
            raise provider_error("bad_response", f"a line of the stream is longer than {limit // 2**20} MiB")
    for raw in bytes(pending).splitlines():  # the body ended without a line end
        yield raw.decode("utf-8", "replace")


async def finish_body(rest: AsyncIterator[Any], *, within_s: float = FINISH_BODY_S) -> None:
    """Reads what is left of a stream after its end marker (in practice: the body's last chunk), so httpx
    puts the connection back in its pool. A response closed before its body ended loses the connection,
    and every streamed call then paid a new TCP (or TLS) connection before its first byte. A server that
    keeps the body open past its end marker only costs the connection, after `within_s`."""
    # The answer is complete either way: a failure here only loses the connection.
    with contextlib.suppress(TimeoutError, httpx.HTTPError, httpx.StreamError):
        async with asyncio.timeout(within_s):
            async for _ in rest:
                pass


# What a network failure says to the client, by httpx's exception (the subclass first matches exactly).
_NETWORK: dict[type[Exception], str] = {
    httpx.ConnectError: "could not connect",
    httpx.RemoteProtocolError: "the connection broke, or the answer was not valid HTTP",
    httpx.ReadError: "the connection failed while reading the answer",
    httpx.WriteError: "the connection failed while sending the request",
    httpx.ProxyError: "the proxy refused the connection",
    httpx.UnsupportedProtocol: "the provider's URL has a scheme that is not served",
}


def _network_words(exc: Exception) -> str:
    """The kind of a network failure; a proxy's refusal of the tunnel keeps its status (the transport's
    own words, `the proxy refused the tunnel: 407 ...`: no host in them)."""
    if isinstance(exc, httpx.ProxyError) and str(exc).startswith(PROXY_REFUSED):
        return str(exc)
    return _NETWORK.get(type(exc), "the connection failed")


@asynccontextmanager
async def transport_errors(provider: str) -> AsyncIterator[None]:
    """Maps httpx's and asyncio's failures into the taxonomy; ProviderErrors pass through untouched."""
    try:
        yield
    except ProviderError:
        raise
    except (httpx.TimeoutException, TimeoutError) as exc:
        # past the connection, the request went out: the provider has the prompt (it is billed)
        went_out = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        message = f"{provider}: no answer in time ({type(exc).__name__})"
        raise provider_error("timeout", message, abandoned=went_out) from exc
    except httpx.DecodingError as exc:
        log.warning("%s: %s: %s", provider, type(exc).__name__, redact(str(exc)))
        message = f"{provider}: the answer's body could not be decoded (its Content-Encoding)"
        raise provider_error("bad_response", message) from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        # The exception's own words name the upstream's host and port (an internal vLLM server's address)
        # and the HTTP library's internals: they go to this log, the client and the ledger get the kind.
        log.warning("%s: %s: %s", provider, type(exc).__name__, redact(str(exc)))
        raise provider_error("network", f"{provider}: {_network_words(exc)}") from exc


async def read_error_body(response: httpx.Response) -> bytes:
    """An error's body, its first `MAX_ERROR_BODY` bytes: the rest is not read."""
    body = bytearray()
    async for part in response.aiter_bytes():
        body += part
        if len(body) >= MAX_ERROR_BODY:
            break
    return bytes(body[:MAX_ERROR_BODY])


async def read_answer_body(response: httpx.Response, *, limit: int, provider: str) -> bytes:
    """A whole answer's body, decoded, failed as `bad_response` once it passes `limit` bytes (read no
    further: the connection is closed, not returned to the pool)."""
    body = bytearray()
    async for part in response.aiter_bytes():
        body += part
        if len(body) > limit:
            message = f"{provider}: the answer's body is larger than {limit // 2**20} MiB"
            raise provider_error("bad_response", message)
    return bytes(body)


@asynccontextmanager
async def time_limit(timeout_s: float | None) -> AsyncIterator[None]:
    """The whole call's bound, on top of httpx's per-read timeouts (a server may trickle bytes forever)."""
    if timeout_s is None:
        yield
        return
    async with asyncio.timeout(timeout_s):
        yield


class HttpProvider(ABC):
    """An adapter that POSTs one JSON request per call, to a JSON answer or a Server-Sent Events stream.
    A provider says where (`_path`), what (`_body`, `_headers`), how its errors and answers read
    (`_error`, `_reply`) and how its stream reads (`_parts`); the calling, time limits, error bodies and
    closing of streams are here. `function_names`: the function names the provider takes (`tool_names.py`: the
    others renamed for the call, named back in the answer)."""

    name: str
    function_names: NameRule | None = None

    def __init__(
        self,
        *,
        base_url: str,
        timeout_s: float,
        client: httpx.AsyncClient | None,
        secret: SecretStr | None = None,
    ) -> None:
        """`secret`: the provider key, taken out of any error's words (a proxy or server that quotes the
        request's headers back), whatever its form: the log's patterns know only some."""
        self._secret = secret.get_secret_value() if secret is not None else ""
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._client = client or make_client(base_url=base_url, timeout_s=timeout_s)
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    @abstractmethod
    def _path(self, call: ProviderCall, *, stream: bool) -> str: ...

    @abstractmethod
    def _body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]: ...

    @abstractmethod
    def _headers(self, *, stream: bool) -> dict[str, str]: ...

    @abstractmethod
    def _error(self, status: int, raw: bytes, headers: httpx.Headers) -> ProviderError: ...

    @abstractmethod
    def _reply(self, raw: bytes, call: ProviderCall) -> Reply: ...

    @abstractmethod
    def _parts(self, response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]: ...

    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of `path`, merged with the client's base URL once (httpx re-parses a relative
        URL on every request)."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= MAX_CACHED_URLS:
                self._urls.clear()
            url = self._urls[path] = self._client.build_request("POST", path).url
        return url

    def _body_headers(self, body: dict[str, Any]) -> dict[str, str]:
        """Headers a particular body needs (a beta feature it uses); none by default."""
        return {}

    def _build(self, call: ProviderCall, *, stream: bool) -> httpx.Request:
        """The request, its body encoded with orjson (httpx's `json=` goes through the stdlib encoder)."""
        body = self._body(call, stream=stream)
        return self._client.build_request(
            "POST",
            self._url(self._path(call, stream=stream)),
            content=orjson.dumps(body),
            headers={**JSON_HEADERS, **self._headers(stream=stream), **self._body_headers(body)},
            timeout=request_timeout(call.timeout_s, self._timeout_s),
        )

    @asynccontextmanager
    async def _unquoted(self) -> AsyncIterator[None]:
        """ProviderErrors raised inside with the provider key taken out of their words."""
        try:
            yield
        except ProviderError as error:
            if self._secret and self._secret in error.message:
                error.message = error.message.replace(self._secret, "[REDACTED]")
                error.args = (error.message,)
            raise

    async def request(self, call: ProviderCall) -> Reply:
        names = ToolNames(call, self.function_names) if self.function_names is not None else None
        call = names.call if names is not None else call
        request = self._build(call, stream=False)
        async with self._unquoted(), transport_errors(self.name), time_limit(call.timeout_s):
            reply = self._whole(await self._answer(request), call)
        return names.reply(reply) if names is not None else reply

    def _whole(self, raw: bytes, call: ProviderCall) -> Reply:
        """A 200's whole answer; one whose body is the provider's error object instead (a proxy, or a
        server that reports a failure with a 200) is that error, as a stream's error event is read."""
        try:
            return self._reply(raw, call)
        except ProviderError:
            with contextlib.suppress(orjson.JSONDecodeError):
                data = orjson.loads(raw)
                if isinstance(data, dict) and data.get("error"):  # a Responses object has `"error": null`
                    raise self._error(500, raw, httpx.Headers()) from None
            raise

    async def _post(
        self, path: str, body: dict[str, Any], *, timeout_s: float | None, limit: int = MAX_ANSWER_BYTES
    ) -> bytes:
        """One JSON POST beside the chat call (an embeddings call): the answer's body (at most `limit`
        bytes), or the provider's error, with `request`'s transport errors and time limit."""
        request = self._client.build_request(
            "POST",
            self._url(path),
            content=orjson.dumps(body),
            headers={**JSON_HEADERS, **self._headers(stream=False)},
            timeout=request_timeout(timeout_s, self._timeout_s),
        )
        async with self._unquoted(), transport_errors(self.name), time_limit(timeout_s):
            return await self._answer(request, limit=limit)

    async def _answer(self, request: httpx.Request, *, limit: int = MAX_ANSWER_BYTES) -> bytes:
        """The body of a 200, else the provider's error (from the first `MAX_ERROR_BODY` bytes of its body):
        read as it comes, never more than `limit` bytes decoded."""
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise self._error(response.status_code, await read_error_body(response), response.headers)
            return await read_answer_body(response, limit=limit, provider=self.name)
        finally:
            await response.aclose()

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        names = ToolNames(call, self.function_names) if self.function_names is not None else None
        parts = self._stream(names.call if names is not None else call)
        try:
            async with self._unquoted():
                async for part in parts:
                    yield names.part(part) if names is not None else part
        finally:  # closed early (a cut): its HTTP response closes now, not when the generator is collected
            await parts.aclose()

    async def _stream(self, call: ProviderCall) -> AsyncGenerator[StreamPart, None]:
        request = self._build(call, stream=True)
        first, headers = call.first_wait_s(), call.headers_s
        if headers is not None and first is not None and headers >= first:
            headers = None  # the first-output bound (the recording's) comes first: its cut says which
        async with transport_errors(self.name):
            timer = asyncio.timeout(headers)
            try:
                async with timer:
                    response = await self._client.send(request, stream=True)
            except TimeoutError:
                if headers is None or not timer.expired():
                    raise
                message = f"{self.name}: the response did not begin within {headers:g} s"
                raise provider_error("timeout", message, abandoned=True) from None
        try:
            if response.status_code != 200:
                async with transport_errors(self.name):
                    raw = await read_error_body(response)
                raise self._error(response.status_code, raw, response.headers)
            media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media in NOT_EVENTS:
                # A whole answer (a compatible server that does not stream), the provider's error, or a
                # proxy's page: read as such, not as a stream that "ended before it finished".
                async with transport_errors(self.name):
                    raw = await read_answer_body(response, limit=MAX_ANSWER_BYTES, provider=self.name)
                if media == "text/html":
                    message = f"{self.name}: the answer is an HTML page, not an event stream: {raw[:200]!r}"
                    raise provider_error("bad_response", message)
                for part in reply_parts(self._whole(raw, call)):
                    yield part
                return
            async for part in self._parts(response, call):
                yield part
        finally:
            await response.aclose()
