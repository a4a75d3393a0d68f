"""Where exports go, each a `Sink`: syslog over TCP or TLS, or a JSON Lines file (HEC is in `hec.py`).

`deliver` sends encoded entries (applying backpressure: it returns once the data is handed over) and
returns the highest seq known delivered. A plain TCP/TLS syslog stream has no acknowledgement, so an entry
counts as delivered once it was written `settle_s` ago and the receiver has not closed the connection since;
when the connection breaks, the exporter resends everything after the last delivered seq (the SIEM
de-duplicates on seq). A file entry is delivered once fsynced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections import deque
from pathlib import Path
from typing import Protocol

Item = tuple[int, bytes]  # (seq, encoded bytes)


class SinkError(Exception):
    """The destination failed now; reconnect and resend from the last delivered seq."""


class SinkFatal(Exception):
    """The destination refuses us for good (bad token, bad request): stop and say why."""


class Sink(Protocol):
    async def deliver(self, items: list[Item]) -> int: ...

    async def confirm(self) -> int: ...

    async def flush(self) -> int: ...

    async def close(self) -> None: ...


class StreamSink:
    """Octet-counted syslog frames over one TCP (or TLS) connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        settle_s: float = 2.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.server_name = server_name or host
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._written: deque[tuple[float, int]] = deque()
        self._confirmed = 0

    async def open(self) -> StreamSink:
        try:
            async with asyncio.timeout(self.timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, server_hostname=self.server_name if self.tls else None
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise SinkError(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc
        return self

    def _check_alive(self) -> None:
        if self._writer is None or self._reader is None:
            raise SinkError("not connected")
        if self._reader.at_eof() or self._writer.is_closing():
            raise SinkError(f"{self.host}:{self.port} closed the connection")

    async def deliver(self, items: list[Item]) -> int:
        self._check_alive()
        assert self._writer is not None
        try:
            self._writer.writelines([data for _, data in items])
            async with asyncio.timeout(self.timeout_s):
                await self._writer.drain()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise SinkError(f"sending to {self.host}:{self.port} failed: {exc!r}") from exc
        self._written.append((time.monotonic(), items[-1][0]))
        return self._settled()

    def _settled(self) -> int:
        self._check_alive()
        horizon = time.monotonic() - self.settle_s
        while self._written and self._written[0][0] <= horizon:
            self._confirmed = self._written.popleft()[1]
        return self._confirmed

    async def confirm(self) -> int:
        await asyncio.sleep(0)
        return self._settled()

    async def flush(self) -> int:
        """Waits until everything written has settled (on a graceful stop)."""
        if self._written:
            await asyncio.sleep(max(0.0, self._written[-1][0] + self.settle_s - time.monotonic()))
        return self._settled()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(2.0):
                    await self._writer.wait_closed()
            self._writer = self._reader = None


class FileSink:
    """Appends lines to a file; an entry is delivered once the file is fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._last = 0

    async def open(self) -> FileSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        return self

    async def deliver(self, items: list[Item]) -> int:
        if self._fd is None:
            raise SinkError("the file is not open")
        data = b"".join(d for _, d in items)
        await asyncio.to_thread(self._write, data)
        self._last = items[-1][0]
        return self._last

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    async def confirm(self) -> int:
        return self._last

    async def flush(self) -> int:
        return self._last

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
