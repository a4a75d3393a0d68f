"""From a destination URL to an encoder framing and a sink factory."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from switchyard.audit.export.config import ExportSettings
from switchyard.audit.export.formats import Encoder
from switchyard.audit.export.hec import HecSink
from switchyard.audit.export.sinks import FileSink, Sink, StreamSink
from switchyard.common.errors import ConfigurationError

SCHEMES = {"tcp": "syslog", "tls": "syslog", "http": "hec", "https": "hec", "file": "line"}


def tls_context(settings: ExportSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        cafile=str(settings.siem_tls_ca_file) if settings.siem_tls_ca_file else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.siem_tls_cert_file:
        key = str(settings.siem_tls_key_file) if settings.siem_tls_key_file else None
        ctx.load_cert_chain(str(settings.siem_tls_cert_file), key)
    return ctx


def destination(
    url: str, fmt: str, settings: ExportSettings
) -> tuple[Encoder, Callable[[], Awaitable[Sink]]]:
    parts = urlsplit(url)
    framing = SCHEMES.get(parts.scheme)
    if framing is None:
        raise ConfigurationError(
            f"SWITCHYARD_SIEM_URL: unsupported scheme {parts.scheme!r} ({', '.join(SCHEMES)})"
        )
    encoder = Encoder(
        fmt=fmt,
        framing=framing,
        hostname=settings.siem_hostname,
        sd_id=settings.siem_sd_id,
        max_bytes=settings.siem_max_frame_bytes,
    )
    if framing == "syslog":
        if not parts.hostname or not parts.port:
            raise ConfigurationError(f"SWITCHYARD_SIEM_URL: {url} needs a host and a port")
        host, port = parts.hostname, parts.port
        tls = tls_context(settings) if parts.scheme == "tls" else None

        async def open_stream() -> Sink:
            sink = StreamSink(
                host,
                port,
                tls=tls,
                server_name=settings.siem_tls_server_name,
                settle_s=settings.siem_settle_s,
            )
            return await sink.open()

        return encoder, open_stream
    if framing == "hec":
        token = settings.siem_hec_token
        if token is None:
            raise ConfigurationError("SWITCHYARD_SIEM_HEC_TOKEN is required for a Splunk HEC destination")
        verify: bool | str = str(settings.siem_tls_ca_file) if settings.siem_tls_ca_file else True
        base = f"{parts.scheme}://{parts.netloc}"

        async def open_hec() -> Sink:
            sink = HecSink(base, token=token, verify=verify, ack_timeout_s=settings.siem_hec_ack_timeout_s)
            return await sink.open()

        return encoder, open_hec
    path = Path(parts.path)

    async def open_file() -> Sink:
        return await FileSink(path).open()

    return encoder, open_file
