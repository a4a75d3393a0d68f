"""A fast mock of an OpenAI-compatible upstream for benchmarks: JSON and SSE, configurable latency.

Plain asyncio (no framework) so its own cost is small and the same for every system measured against
it. Keep-alive HTTP/1.1; SSE is sent with chunked transfer encoding, as real providers do.

    python bench/upstream.py --port 9900 --latency-ms 20 --chunks 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

WORDS = [
    "Paris",
    "is",
    "the",
    "capital",
    "and",
    "most",
    "populous",
    "city",
    "of",
    "France,",
    "on",
    "the",
    "Seine.",
]


def _completion(model: str, created: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(WORDS)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": len(WORDS), "total_tokens": 20 + len(WORDS)},
        }
    ).encode()


def _chunk(model: str, created: int, delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage_chunk(model: str, created: int) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 20, "completion_tokens": len(WORDS), "total_tokens": 20 + len(WORDS)},
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class Upstream:
    def __init__(self, latency_s: float, chunks: int, chunk_gap_s: float) -> None:
        self.latency_s = latency_s
        self.chunks = chunks
        self.chunk_gap_s = chunk_gap_s
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                if method == "GET" and path.endswith("/models"):
                    await self._send(
                        writer, 200, b'{"object":"list","data":[{"id":"bench-model","object":"model"}]}'
                    )
                elif method == "POST" and path.endswith("/chat/completions"):
                    req = json.loads(body or b"{}")
                    model = req.get("model", "bench-model")
                    await asyncio.sleep(self.latency_s)
                    if req.get("stream"):
                        await self._stream(
                            writer, model, bool((req.get("stream_options") or {}).get("include_usage"))
                        )
                    else:
                        await self._send(writer, 200, _completion(model, int(time.time())))
                else:
                    await self._send(
                        writer, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}'
                    )
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        reason = {200: "OK", 404: "Not Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: keep-alive\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, model: str, usage: bool) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"connection: keep-alive\r\n\r\n"
        )
        created = int(time.time())
        per = max(1, len(WORDS) // self.chunks)
        pieces = [" ".join(WORDS[i : i + per]) + " " for i in range(0, len(WORDS), per)]
        events = [_chunk(model, created, {"role": "assistant", "content": ""})]
        events += [_chunk(model, created, {"content": p}) for p in pieces]
        events.append(_chunk(model, created, {}, "stop"))
        if usage:
            events.append(_usage_chunk(model, created))
        events.append(b"data: [DONE]\n\n")
        for i, event in enumerate(events):
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await writer.drain()
            if self.chunk_gap_s and 0 < i < len(events) - 2:
                await asyncio.sleep(self.chunk_gap_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def serve(port: int, latency_s: float, chunks: int, chunk_gap_s: float) -> None:
    upstream = Upstream(latency_s, chunks, chunk_gap_s)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9900)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-gap-ms", type=float, default=2.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.latency_ms / 1000, args.chunks, args.chunk_gap_ms / 1000))


if __name__ == "__main__":
    main()
