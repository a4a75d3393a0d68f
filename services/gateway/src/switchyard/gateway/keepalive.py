"""Keep-alives in a stream's silences. A model may be silent for minutes once it has begun (reasoning
between a text part and a tool call; Anthropic holding a tool's input back, sending only pings), and the
gateway waits as long as its client declared it would (README, Long answers). Proxies and load balancers
between the client and the gateway close a connection idle for less: 60 s is the default of nginx's
`proxy_read_timeout` and of AWS's application load balancers. So a stream silent for
SWITCHYARD_STREAM_KEEPALIVE_S gets its face's keep-alive, which every client of that face skips: an SSE
comment (`: keep-alive`) on the OpenAI faces, whose SDKs' decoders drop comment lines, and Anthropic's own
`ping` event on the Anthropic face, and a blank line on the Gemini face: google-genai reads any other line
not starting with `data: ` as a JSON error body, but skips blank ones, which end no event (its SSE, like
every SSE reader, dispatches none for an empty data buffer), and in its unsuffixed stream, one JSON
array, a blank line is whitespace between two elements.

The same silence before a stream's first output: the gateway holds a stream's response until its first
output, so that a failure before it is answered with its HTTP status (and a fallback to the next model is
not seen), but no longer than SWITCHYARD_STREAM_KEEPALIVE_S on a face with keep-alives (`opening_s`): the
response then starts, keep-alives fill the wait (a reasoning model may think for minutes before its first
token), and a failure after that is the stream's error event, as it is once output went out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

COMMENT = b": keep-alive\n\n"
BLANK = b"\n"  # the Gemini face's
_END = object()


def opening_s(beat: bytes | None, every_s: float) -> float | None:
    """How long a stream's response waits for its first output before it starts anyway (None: until it
    comes): a face without keep-alives has nothing to fill the wait with."""
    return every_s if beat is not None and every_s > 0 else None


class _Failed:
    def __init__(self, error: Exception) -> None:
        self.error = error


async def beating(events: AsyncIterator[bytes], beat: bytes | None, every_s: float) -> AsyncIterator[bytes]:
    """`events`, with `beat` sent whenever none came for `every_s` (neither 0 nor None: `events` as it is).

    `events` is read by one task of its own into a queue of one (so it never runs ahead of the client, and
    its own timers and cancellation stay in one task, as an async generator's must); this generator waits
    on the queue under a timer (cancelling a queue's get loses nothing), and raises what `events` raised.
    Cancelling it (the client went away, the server's stop) cancels that task."""
    if beat is None or every_s <= 0:
        async for event in events:
            yield event
        return
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(_Failed(exc))
        else:
            await queue.put(_END)

    reader = asyncio.create_task(pump())
    try:
        while True:
            if queue.empty():
                try:
                    async with asyncio.timeout(every_s):
                        item = await queue.get()
                except TimeoutError:
                    yield beat
                    continue
            else:  # the usual case while a stream flows: no timer
                item = queue.get_nowait()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, bytes)
            yield item
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
