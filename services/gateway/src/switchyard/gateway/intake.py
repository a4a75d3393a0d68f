"""How many bytes of request bodies a gateway replica takes in at once (SWITCHYARD_MAX_BODY_BYTES_READING).

A body costs a replica several times its size while it is read, parsed, checked and admitted (the bytes,
the JSON read, the validated request, the task and its encoding for the bus: a max-size body, ~7.75 MiB,
raised its peak RSS by ~40 MiB), and the allocator does not give all of it back. Thirty coding agents
sending screenshots at once took a replica 713 MiB above its idle RSS, past the shipped 512 MiB limit: an
out-of-memory kill ends every request on the replica. Once a request's task is published it holds
little of its body (`serving.serve`), so what is bounded here is the bodies being taken in: a request
waits (up to `WAIT_S`, with its body still in the socket's buffers, not in the process) until the bytes
it declares fit, then is refused with 503 `gateway_busy` and Retry-After (the OpenAI and Anthropic SDKs
send it again by themselves). One body is always taken, however large: the budget bounds how many, not
which. docs/performance.md, "Requests in flight", has the measurements.

Every route that reads a whole body before its work takes it in here: the completions of every face, the
embeddings (OpenAI's and Gemini's), the task API, the token counts and batch creation. Not file uploads and
message batches: they are read in slices as they arrive and never held whole.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request

from switchyard.gateway.errors import GatewayBusy

WAIT_S = 10.0  # how long a request waits for room before 503 `gateway_busy`
# glibc's malloc serves a block this large or larger with a mapping of its own, unmapped when freed
# (`mallopt(M_MMAP_THRESHOLD)`, fixed: its default, 128 KiB, rises to the largest block freed, up to 32 MiB,
# after which a body's blocks come from the heap and what they leave there is not given back to the system).
MMAP_THRESHOLD = 256 * 1024
M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def map_large_blocks() -> bool:
    """Large blocks (a body, its strings, its encoding for the bus) given back to the system when freed:
    the RSS a max-size body left behind went from ~25 MiB to ~2 MiB, 30 of them from ~100 to ~30 MiB. As
    MALLOC_MMAP_THRESHOLD_ does, which, when set, is left to decide. Whether it was set here (not on a C
    library without `mallopt`, e.g. musl)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


class Intake:
    """The bytes of bodies being taken in, against `limit` (0: no limit)."""

    def __init__(self, limit: int, *, max_body_bytes: int, wait_s: float = WAIT_S) -> None:
        self.limit = limit
        self.max_body_bytes = max_body_bytes
        self.wait_s = wait_s
        self.taken = 0
        self._room = asyncio.Condition()

    def size_of(self, request: Request) -> int:
        """What a request's body is counted as: its Content-Length, or, without one (a chunked body), the
        largest body it may be (`SWITCHYARD_MAX_BODY_BYTES`)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            return min(int(declared), self.max_body_bytes)
        return self.max_body_bytes

    @asynccontextmanager
    async def taking(self, request: Request) -> AsyncIterator[None]:
        """Room for `request`'s body while the block runs (reading it up to its task's admission)."""
        if self.limit <= 0:
            yield
            return
        size = self.size_of(request)
        async with self._room:
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._room.wait_for(lambda: self.taken == 0 or self.taken + size <= self.limit)
            except TimeoutError:
                raise GatewayBusy(
                    f"this gateway replica is taking in {self.taken} bytes of request bodies, its limit "
                    f"(SWITCHYARD_MAX_BODY_BYTES_READING, {self.limit}) and this request's {size} bytes "
                    f"did not fit within {self.wait_s:g} s: send it again"
                ) from None
            self.taken += size
        try:
            yield
        finally:
            async with self._room:
                self.taken -= size
                self._room.notify_all()
