"""httpx's provider calls over aiohttp's connection pool: `AiohttpTransport`.

The adapters speak httpx (requests, responses, timeouts, streams); this transport sends what they build
through aiohttp's pooled HTTP/1.1 client, whose C parser and asyncio-native connections cost far less CPU
per call than httpcore over anyio, whose cost grows with the calls in flight. `bench/transport_bench.py`
(the bench's mock upstream at 5 ms, 3,000 calls, uvloop, AMD EPYC VM): CPU-ms per call through httpcore /
here, 1.4-1.6 / 0.8-1.0 one call at a time, 2.1-2.3 / 0.46-0.49 at 16 in flight, 2.7-3.2 / 0.42 at 64.

What the adapters rely on is kept: the same httpx exceptions for the same failures (a read timeout is
`httpx.ReadTimeout`, a refused connection `httpx.ConnectError`, a server that hangs up or sends what is
not HTTP `httpx.RemoteProtocolError`), bodies streamed as they arrive, content decoding left to httpx
(so `Accept-Encoding` and `Content-Encoding` mean what they did), redirects never followed, no cookies
kept (aiohttp gets no jar; `make_client` gives httpx's client one that accepts none), and
`HTTP(S)_PROXY` / `NO_PROXY` honoured as httpx honoured them. A response closed before its body ended
closes its connection instead of returning it to the pool.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import yarl

KEEPALIVE_S = 5.0  # httpx's default keep-alive expiry
PROXY_REFUSED = "the proxy refused the tunnel"
# The server hung up, cut its body short, or sent what is not HTTP.
PROTOCOL_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)


def _mapped(exc: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx exception httpcore raises for the same failure (most specific first)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError(message)
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel (407, 403, 502...)
        return httpx.ProxyError(f"{PROXY_REFUSED}: {exc.status} {exc.message}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError
    ):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(message)
    return httpx.NetworkError(message)


def _no_proxy(host: str, no_proxy: str) -> bool:
    """`NO_PROXY` names the host: `*`, the host itself, or a domain it is in (`example.com` and
    `.example.com` both cover `api.example.com`); a port on an entry is ignored, as urllib ignores it."""
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        if entry.count(":") == 1:  # a port (an IPv6 address has more colons)
            entry = entry.partition(":")[0]
        entry = entry.strip("[]").lstrip(".")
        if entry and (host.strip("[]") == entry or host.endswith("." + entry)):
            return True
    return False


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as exc:
        raise _mapped(exc) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool if the body was read to its end; closed otherwise (aiohttp decides).
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_s: float = KEEPALIVE_S) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._ssl: ssl.SSLContext = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR
        self._session: aiohttp.ClientSession | None = None
        # Read once, as httpx reads them when its client is made: asking the environment on every call
        # (aiohttp's `trust_env`) cost ~0.5-0.9 ms of CPU per call.
        self._env_proxies = urllib.request.getproxies_environment()
        self._proxies: dict[tuple[str, str], tuple[str, dict[str, str] | None] | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        """On first use, in the event loop that makes the calls (aiohttp binds a session to its loop)."""
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_s, ssl=self._ssl
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,  # proxies from the environment are read once (`_proxy`), not per call
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),  # httpx's own are sent
        )

    def _proxy(self, url: httpx.URL) -> tuple[str, dict[str, str] | None] | None:
        """The proxy for `url` (`HTTP(S)_PROXY`, `ALL_PROXY`, unless `NO_PROXY` names its host), by scheme and
        host, and the proxy's headers: credentials in its URL become its Basic auth."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            found = self._env_proxies.get(url.scheme) or self._env_proxies.get("all")
            if not found or _no_proxy(url.host, self._env_proxies.get("no", "")):
                self._proxies[key] = None
            else:
                proxy = yarl.URL(found if "://" in found else f"http://{found}")
                auth = (
                    {"Proxy-Authorization": aiohttp.encode_basic_auth(proxy.user, proxy.password or "")}
                    if proxy.user
                    else None
                )
                self._proxies[key] = (str(proxy.with_user(None)), auth)
        return self._proxies[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        proxy, proxy_headers = self._proxy(request.url) or (None, None)
        headers = [(k, v) for k, v in request.headers.multi_items() if k != "content-length"]
        if proxy_headers and request.url.scheme == "http":
            # A plain-HTTP call goes to the proxy as it is: its credentials travel in the request (aiohttp
            # sends `proxy_headers` only on the CONNECT of an HTTPS tunnel, never to the origin).
            headers.extend(proxy_headers.items())
        with _httpx_errors():
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),  # a free connection, then connecting
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
