"""The aiohttp transport under httpx, against raw local servers: what arrives, what comes back, and each
failure as the httpx exception the adapters map into the error taxonomy."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.http import make_client, transport_errors
from switchyard.executor.providers.transport import _mapped, _no_proxy
from tests.support.ports import RefusedPort
from tests.support.rsyslog import make_tls_files

pytestmark = pytest.mark.integration
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback TCP server running `handler` per connection; counts connections, keeps what it read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"


Serve = Callable[[Callable[[RawServer], Handler]], Awaitable[RawServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[RawServer] = []

    async def start(make: Callable[[RawServer], Handler]) -> RawServer:
        raw = RawServer(lambda r, w: make(raw)(r, w))
        raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
        servers.append(raw)
        return raw

    yield start
    for raw in servers:
        assert raw.server is not None
        raw.server.close()


def _answer(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", "Content-Type: application/json", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _keep_alive(*headers: str) -> Callable[[RawServer], Handler]:
    """A server answering every request on a connection with `{"ok": true}` (and `headers`)."""

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while not reader.at_eof():
                try:
                    await raw.read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                writer.write(_answer(b'{"ok":true}', *headers))
                await writer.drain()

        return handler

    return make


async def _post(client: httpx.AsyncClient, *, stream: bool = False, read_s: float = 5.0) -> httpx.Response:
    request = client.build_request(
        "POST",
        "chat/completions",
        content=b'{"model":"m"}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-test"},
        timeout=httpx.Timeout(read_s, connect=1.0),
    )
    return await client.send(request, stream=stream)


async def test_a_call_sends_what_httpx_built_and_reuses_its_connection(serve: Serve) -> None:
    raw = await serve(_keep_alive())
    client = make_client(base_url=raw.url)
    try:
        for _ in range(3):
            response = await _post(client)
            assert response.status_code == 200 and response.json() == {"ok": True}
    finally:
        await client.aclose()
    assert raw.connections == 1  # kept alive between calls
    head, _, body = raw.requests[0].partition(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert lines[0] == b"post /v1/chat/completions http/1.1"
    assert b"authorization: bearer sk-test" in lines and b"content-type: application/json" in lines
    assert b"content-length: 13" in lines and body == b'{"model":"m"}'
    assert sum(line.startswith(b"content-length") for line in lines) == 1


async def test_compressed_bodies_are_decoded_by_httpx(serve: Serve) -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            writer.write(_answer(gzip.compress(b'{"text":"zipped"}'), "Content-Encoding: gzip"))
            await writer.drain()

        return handler

    raw = await serve(make)
    client = make_client(base_url=raw.url)
    try:
        response = await _post(client)
    finally:
        await client.aclose()
    assert response.json() == {"text": "zipped"}
    assert b"accept-encoding: gzip" in raw.requests[0].lower()


async def test_a_stream_arrives_as_it_is_sent_and_a_cut_one_closes_its_connection(serve: Serve) -> None:
    sent_second = asyncio.Event()
    release = asyncio.Event()

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            if raw.connections > 1:
                writer.write(_answer(b'{"ok":true}'))
                await writer.drain()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            writer.write(b"7\r\ndata:1\n\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"7\r\ndata:2\n\r\n")
            await writer.drain()
            sent_second.set()
            await asyncio.sleep(5)  # never ends the body

        return handler

    raw = await serve(make)
    client = make_client(base_url=raw.url)
    try:
        response = await _post(client, stream=True)
        parts = response.aiter_bytes()
        assert await asyncio.wait_for(anext(parts), 2) == b"data:1\n"  # before the second chunk exists
        release.set()
        assert await asyncio.wait_for(anext(parts), 2) == b"data:2\n"
        await response.aclose()  # mid-body: the connection cannot go back to the pool
        assert (await _post(client)).json() == {"ok": True}
    finally:
        await client.aclose()
    assert sent_second.is_set() and raw.connections == 2


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"this is not HTTP at all\r\n\r\n", httpx.RemoteProtocolError),
        (b"", httpx.RemoteProtocolError),  # hangs up without a word
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut', httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
    ],
    ids=["garbage", "hang-up", "short-body", "bad-chunk"],
)
async def test_broken_answers_are_httpx_protocol_errors_and_network_errors(
    serve: Serve, reply: bytes, expected: type[Exception]
) -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            writer.write(reply)
            await writer.drain()

        return handler

    raw = await serve(make)
    client = make_client(base_url=raw.url)
    try:
        with pytest.raises(expected):
            await _post(client)
        with pytest.raises(ProviderError) as caught:
            async with transport_errors("test"):
                await _post(client)
    finally:
        await client.aclose()
    assert caught.value.kind == "network" and caught.value.retryable


async def test_a_silent_server_is_a_read_timeout(serve: Serve) -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            await asyncio.sleep(5)

        return handler

    raw = await serve(make)
    client = make_client(base_url=raw.url)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await _post(client, read_s=0.3)
        with pytest.raises(ProviderError) as caught:
            async with transport_errors("test"):
                await _post(client, read_s=0.3)
    finally:
        await client.aclose()
    assert caught.value.kind == "timeout"


async def test_a_refused_connection_is_a_connect_error() -> None:
    with RefusedPort() as port:
        client = make_client(base_url=f"http://127.0.0.1:{port.port}/v1")
        try:
            with pytest.raises(httpx.ConnectError):
                await _post(client)
        finally:
            await client.aclose()


def test_each_aiohttp_failure_maps_to_the_httpx_exception_httpcore_raises() -> None:
    assert isinstance(_mapped(aiohttp.ConnectionTimeoutError("connect")), httpx.ConnectTimeout)
    assert isinstance(_mapped(aiohttp.SocketTimeoutError("read")), httpx.ReadTimeout)
    assert isinstance(_mapped(aiohttp.ServerTimeoutError("read")), httpx.ReadTimeout)
    assert isinstance(_mapped(aiohttp.ServerDisconnectedError()), httpx.RemoteProtocolError)
    assert isinstance(_mapped(aiohttp.ClientPayloadError("cut")), httpx.RemoteProtocolError)
    assert isinstance(_mapped(aiohttp.ClientOSError(104, "reset")), httpx.ReadError)
    assert isinstance(_mapped(aiohttp.InvalidURL("nope")), httpx.UnsupportedProtocol)
    assert type(_mapped(aiohttp.ClientError("other"))) is httpx.NetworkError


def _ok(raw: RawServer) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(_answer(b'{"ok":true}'))
        await writer.drain()

    return handler


async def test_calls_go_through_the_environments_proxy_with_its_credentials(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await serve(_ok)
    port = proxy.url.split(":")[2].split("/")[0]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:s3cret@127.0.0.1:{port}")
    client = make_client(base_url="http://provider.test/v1")  # the proxy is read when the client is made
    try:
        assert (await _post(client)).json() == {"ok": True}
    finally:
        await client.aclose()
    head = proxy.requests[0].split(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert head[0] == b"post http://provider.test/v1/chat/completions http/1.1"  # absolute form, to a proxy
    assert b"proxy-authorization: basic dxnlcjpzm2nyzxq=" in head  # base64("user:s3cret"), lowercased


async def test_no_proxy_hosts_are_called_directly(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = await serve(_ok)
    with RefusedPort() as dead_proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_proxy.port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = make_client(base_url=direct.url)
        try:
            assert (await _post(client)).json() == {"ok": True}
        finally:
            await client.aclose()
    assert direct.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1")


async def test_https_verifies_the_providers_certificate(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Certificates are checked against the trusted roots (certifi, or SSL_CERT_FILE): a server whose CA is
    not trusted is a connect error, the same server with its CA trusted answers."""
    tls = make_tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    raw = RawServer(lambda r, w: _ok(raw)(r, w))
    raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=context)
    url = raw.url.replace("http://", "https://")
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = make_client(base_url=url)
        try:
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate"):
                await _post(untrusted)
        finally:
            await untrusted.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))  # read when the client is made
        trusted = make_client(base_url=url)
        try:
            assert (await _post(trusted)).json() == {"ok": True}
        finally:
            await trusted.aclose()
    finally:
        raw.server.close()
    assert raw.requests and raw.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1")


PROXY_CREDENTIALS = b"proxy-authorization: basic dxnlcjpzm2nyzxq="  # base64("user:s3cret"), lowercased


def _tunnel(raw: RawServer) -> Handler:
    """An HTTPS proxy: a CONNECT with the right credentials is answered 200 and its bytes relayed both ways to
    the host and port it names; anything else is answered 407."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        raw.requests.append(head)
        if not head.startswith(b"CONNECT ") or PROXY_CREDENTIALS not in head.lower():
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            return
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        await asyncio.gather(
            relay(reader, upstream_writer), relay(upstream_reader, writer), return_exceptions=True
        )

    return handler


async def test_https_calls_tunnel_through_the_proxy_and_its_credentials_stay_with_it(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What every provider call does behind a corporate proxy: CONNECT with the proxy's credentials, then TLS
    to the provider through the tunnel, its certificate checked as on a direct call. The provider never sees
    the proxy's credentials; wrong ones are the proxy's 407, said as such (a network error to the executor,
    not a malformed answer)."""
    tls = make_tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    provider = RawServer(lambda r, w: _ok(provider)(r, w))
    provider.server = await asyncio.start_server(provider._serve, "127.0.0.1", 0, ssl=context)
    provider_port = provider.server.sockets[0].getsockname()[1]
    proxy = await serve(_tunnel)
    proxy_port = proxy.url.split(":")[2].split("/")[0]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    try:
        for password, answered in (("s3cret", True), ("wrong", False)):
            monkeypatch.setenv("HTTPS_PROXY", f"http://user:{password}@127.0.0.1:{proxy_port}")
            client = make_client(base_url=f"https://localhost:{provider_port}/v1")  # reads the proxy now
            try:
                if answered:
                    assert (await _post(client)).json() == {"ok": True}
                    continue
                with pytest.raises(httpx.ProxyError, match="407") as refused:
                    await _post(client)
            finally:
                await client.aclose()
            with pytest.raises(ProviderError, match="407") as mapped:
                async with transport_errors("openai"):
                    raise refused.value
            assert mapped.value.kind == "network" and password not in str(mapped.value)  # it reaches events
    finally:
        provider.server.close()
    connect = proxy.requests[0].lower().split(b"\r\n")
    assert connect[0] == b"connect localhost:%d http/1.1" % provider_port and PROXY_CREDENTIALS in connect
    assert len(provider.requests) == 1 and provider.requests[0].startswith(
        b"POST /v1/chat/completions HTTP/1.1"
    )
    assert b"proxy-authorization" not in provider.requests[0].lower()


async def test_cookies_a_provider_sets_are_not_sent_on_later_calls(serve: Serve) -> None:
    """A provider's (or its load balancer's) Set-Cookie would otherwise ride on every later call of every
    tenant through the same pooled client."""

    raw = await serve(_keep_alive("Set-Cookie: __cf_bm=tenant-a-session; Path=/"))
    client = make_client(base_url=raw.url)
    try:
        for _ in range(2):
            assert (await _post(client)).json() == {"ok": True}
    finally:
        await client.aclose()
    assert len(raw.requests) == 2 and b"cookie:" not in raw.requests[1].lower()


def test_no_proxy_entries_match_the_host_or_its_domains() -> None:
    assert _no_proxy("api.openai.com", "openai.com") and _no_proxy("api.openai.com", ".openai.com")
    assert _no_proxy("API.OpenAI.com", "localhost, openai.com:443") and _no_proxy("anything", "*")
    assert _no_proxy("127.0.0.1", "127.0.0.1") and _no_proxy("::1", "[::1]")
    assert not _no_proxy("notopenai.com", "openai.com") and not _no_proxy("api.openai.com", "")
    assert not _no_proxy("api.anthropic.com", "openai.com,localhost")
