"""Splunk HTTP Event Collector with indexer acknowledgement.

Each batch is POSTed to `/services/collector/event` (events concatenated, `Authorization: Splunk <token>`,
`X-Splunk-Request-Channel: <uuid>`); the reply's `ackId` is polled on `/services/collector/ack` until the
indexer confirms it. Only then is the batch delivered. 503 (busy), 5xx and network errors are retried by
the exporter (a new channel, the batch resent); 400/401/403 stop the exporter with Splunk's message; 413
splits the batch. A collector with acknowledgement disabled answers without an `ackId`: then HTTP 200 is
the only confirmation there is.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson
from pydantic import SecretStr

from switchyard.audit.export.sinks import Item, SinkError, SinkFatal

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
DEFAULT_BATCH_BYTES = 512 * 1024


class HecSink:
    def __init__(
        self,
        base_url: str,
        *,
        token: SecretStr,
        verify: bool | str = True,
        ack_timeout_s: float = 60.0,
        poll_s: float = 0.2,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        timeout_s: float = 15.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._verify = verify
        self.ack_timeout_s = ack_timeout_s
        self.poll_s = poll_s
        self.batch_bytes = batch_bytes
        self.timeout_s = timeout_s
        self.channel = str(uuid.uuid4())
        self._client: httpx.AsyncClient | None = None
        self._last = 0

    async def open(self) -> HecSink:
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            verify=self._verify,
            timeout=self.timeout_s,
            headers={
                "Authorization": f"Splunk {self._token.get_secret_value()}",
                "X-Splunk-Request-Channel": self.channel,
            },
        )
        return self

    async def deliver(self, items: list[Item]) -> int:
        batch: list[Item] = []
        size = 0
        for item in items:
            if batch and size + len(item[1]) > self.batch_bytes:
                await self._send(batch)
                batch, size = [], 0
            batch.append(item)
            size += len(item[1])
        if batch:
            await self._send(batch)
        return self._last

    async def _send(self, batch: list[Item]) -> None:
        ack_id = await self._post(b"".join(data for _, data in batch), len(batch))
        if ack_id == "split":
            half = len(batch) // 2
            await self._send(batch[:half])
            await self._send(batch[half:])
            return
        if ack_id is not None:
            await self._await_ack(int(ack_id))
        self._last = batch[-1][0]

    async def _post(self, body: bytes, count: int) -> int | str | None:
        response = await self._request(EVENT_PATH, body)
        if response.status_code == 413:
            if count > 1:
                return "split"
            raise SinkFatal("HEC refused a single event as too large: lower the maximum frame size")
        reply = _json(response)
        if response.status_code == 200:
            ack = reply.get("ackId")
            return int(ack) if isinstance(ack, int) else None
        raise self._error(response.status_code, reply, "event")

    async def _await_ack(self, ack_id: int) -> None:
        deadline = time.monotonic() + self.ack_timeout_s
        body = orjson.dumps({"acks": [ack_id]})
        while True:
            response = await self._request(ACK_PATH, body)
            reply = _json(response)
            if response.status_code != 200:
                if reply.get("code") == 14:  # acknowledgement disabled after all: 200 was the confirmation
                    return
                raise self._error(response.status_code, reply, "ack")
            acks = reply.get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return
            if time.monotonic() > deadline:
                raise SinkError(
                    f"HEC did not acknowledge ack {ack_id} within {self.ack_timeout_s}s: resending"
                )
            await asyncio.sleep(self.poll_s)

    async def _request(self, path: str, body: bytes) -> httpx.Response:
        if self._client is None:
            raise SinkError("HEC client not open")
        try:
            return await self._client.post(path, content=body)
        except httpx.HTTPError as exc:
            raise SinkError(f"HEC request to {path} failed: {exc!r}") from exc

    @staticmethod
    def _error(status: int, reply: dict[str, object], what: str) -> Exception:
        text = f"HEC {what}: HTTP {status} code {reply.get('code')}: {reply.get('text')}"
        if status in (400, 401, 403):
            return SinkFatal(text)
        return SinkError(text)

    async def confirm(self) -> int:
        return self._last

    async def flush(self) -> int:
        return self._last

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
