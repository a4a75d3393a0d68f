"""A loopback port where connecting is refused: the address of a provider that is down."""

from __future__ import annotations

import socket
from types import TracebackType


class RefusedPort:
    """Bound, not listening, for as long as it is held: a connection is refused at once. A port from
    `free_port()` is let go at once, so a server started later (the fakes take free ports too) could be
    given it and answer for the provider meant to be down; holding it rules that out. `release()` frees it
    for a test that brings the provider back on it."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])

    def release(self) -> None:
        self._socket.close()

    def __enter__(self) -> RefusedPort:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
