"""The Message Batches API's operations, each scoped to the caller's organisation. A message batch is a
batch of the Batch API (`batches/`) on the endpoint `/v1/messages`: its requests are stored as its input
file (purpose `message_batch`, never shown by the Files API), each line a Messages request the runner
reads through the Anthropic face as it runs it (a bad one is that request's `errored` result); its results
file is written in Anthropic's shape (`batches/message_render.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError

from switchyard.gateway import bounds
from switchyard.gateway.batches import idempotent
from switchyard.gateway.batches.lines import MAX_MESSAGE_LINES, MESSAGES
from switchyard.gateway.batches.models import COMPLETION_WINDOW_S, TERMINAL, Batch, BatchRecord, RequestCounts
from switchyard.gateway.batches.service import Batches
from switchyard.gateway.batches.store import new_batch_id
from switchyard.gateway.errors import (
    APIError,
    Conflict,
    InvalidRequest,
    NotFound,
    RequestTooLarge,
    invalid_fields,
)
from switchyard.gateway.files.upload import max_line_bytes
from switchyard.gateway.message_batches.models import (
    ID_PREFIX,
    KEEP_S,
    MAX_LIST,
    BatchRequest,
    DeletedMessageBatch,
    MessageBatchList,
    message_batch,
)
from switchyard.gateway.message_batches.scan import BadJSON, Body, Oversized, Scanner
from switchyard.gateway.metrics import BATCHES_CREATED
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.tenants import Principal

# A batch's requests file expires this soon, kept past it only while its batch has not ended (the Batch
# API's `in_use`, as any batch's input file): should a replica die between storing it and creating the
# batch, the file (which the organisation can neither see nor delete, but which counts in its share) goes
# after this long, not after the 29 days its results are kept.
REQUESTS_KEEP_S = 3600
STEP = 1000  # requests checked between two turns of the event loop (a few milliseconds)
MAX_BYTES = (
    256 * 1024 * 1024
)  # a create request's body, as Anthropic (and at most SWITCHYARD_FILES_MAX_BYTES)


async def _hashing(body: AsyncIterable[bytes], into: Any) -> AsyncIterator[bytes]:
    async for chunk in body:
        into.update(chunk)
        yield chunk


class MessageBatches:
    def __init__(self, batches: Batches, *, max_body_bytes: int) -> None:
        self.batches = batches
        self.max_body_bytes = max_body_bytes  # one request's params, as POST /v1/messages takes them

    async def create(
        self, *, principal: Principal, body: AsyncIterable[bytes], key: str | None = None
    ) -> Batch:
        """A new batch, its requests stored as its input file as they arrive (`RequestLines`: nothing of
        a refused create is kept). 400 for a `custom_id` used twice; 413 for one request larger than POST
        /v1/messages takes; 429 and 507 as an OpenAI batch's create. With an Idempotency-Key `key`, the
        batch its first request created (`batches.idempotent`: the body is read to compare its requests,
        `RequestLines.digest`)."""
        tenant_id = principal.tenant_id
        raw = hashlib.sha256()  # what a key claimed before requests were compared by their JSON kept
        lines = RequestLines(_hashing(body, raw), max_body_bytes=self.max_body_bytes)
        claim = idempotent.claim_key(tenant_id, key, ID_PREFIX) if key is not None else None
        held = await idempotent.read(self.batches.store.bucket, claim) if claim is not None else None
        # a retry of a batch that exists is not admitted again (it would count itself as unfinished)
        replaying = held is not None and await self.batches.store.read(held.batch_id) is not None

        async def admitted() -> None:  # the body all read and checked, before the file is described
            if replaying:
                return
            await self.batches.share.check(
                self.batches.files,
                tenant_id,
                adding=lines.bytes,
                then="a message batch keeps its requests and its results there; delete files or message "
                "batches you no longer need, then create the batch",
            )
            await self.batches.check_unfinished(tenant_id)

        file = await self.batches.files.put(
            tenant_id=tenant_id,
            purpose="message_batch",
            filename="requests.jsonl",
            data=lines.lines(),
            expires_after_s=REQUESTS_KEEP_S,
            before_described=admitted,
        )
        store, count = self.batches.store, lines.count
        batch_id = new_batch_id(ID_PREFIX)
        if claim is not None:
            try:
                said = idempotency.BodyDigest.sealed(
                    self.batches.body_key, lines.digest.hexdigest(), raw.hexdigest()
                )
                batch_id = await self._claimed(claim, batch_id, said)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.batches.files.delete(tenant_id=tenant_id, file_id=file.id, held=True)
                raise
        now = int(time.time())
        batch = Batch(
            id=batch_id,
            endpoint=MESSAGES,
            input_file_id=file.id,
            status="validating",
            created_at=now,
            expires_at=now + COMPLETION_WINDOW_S,
            request_counts=RequestCounts(total=count),
        )
        record = BatchRecord(
            batch=batch,
            tenant_id=tenant_id,
            user_id=principal.user_id,
            api_key_id=principal.api_key_id,
            output_expires_s=KEEP_S,
            idempotency_claim=claim,
        )
        try:
            created = await store.create(record)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.batches.files.delete(tenant_id=tenant_id, file_id=file.id, held=True)
            raise
        if not created:  # a retry under its key: the batch its first request made is the batch
            with contextlib.suppress(Exception):
                await self.batches.files.delete(tenant_id=tenant_id, file_id=file.id, held=True)
            return (await store.get(tenant_id=tenant_id, batch_id=batch_id, prefix=ID_PREFIX)).batch
        BATCHES_CREATED.labels(MESSAGES).inc()
        self.batches.runner.poke()
        return batch

    async def _claimed(self, claim: str, batch_id: str, sha256: idempotency.BodyDigest) -> str:
        """The id the batch takes under its Idempotency-Key claim (its first request's batch, should one
        have made it: then the create finds it taken); 409 when the key was used with another body."""
        held = await idempotent.take(
            self.batches.store.bucket,
            claim,
            idempotent.Claim(batch_id=batch_id, request_sha256=sha256.kept),
        )
        if not sha256.matches(held.request_sha256):
            raise idempotency.reused()
        return held.batch_id

    async def get(self, *, principal: Principal, batch_id: str) -> BatchRecord:
        """The organisation's message batch; 404 `not_found` (`param` `message_batch_id`) for none, another
        organisation's or an OpenAI batch."""
        store, tenant_id = self.batches.store, principal.tenant_id
        try:
            return await store.get(tenant_id=tenant_id, batch_id=batch_id, prefix=ID_PREFIX)
        except NotFound as exc:
            exc.message = exc.message.replace("no batch", "no message batch", 1)
            exc.param = "message_batch_id"  # the SDK's name for it
            raise

    async def list(
        self, *, principal: Principal, base_url: str, before_id: str | None, after_id: str | None, limit: int
    ) -> MessageBatchList:
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be 1 to {MAX_LIST}", code="invalid_value", param="limit")
        if before_id is not None and after_id is not None:
            raise InvalidRequest(
                "give before_id or after_id, not both", code="invalid_value", param="before_id"
            )
        page, more = await self.batches.store.page(
            tenant_id=principal.tenant_id, after=after_id, before=before_id, limit=limit, kind=ID_PREFIX
        )
        data = [message_batch(batch, base_url=base_url) for batch in page]
        return MessageBatchList(
            data=data,
            has_more=more,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    async def cancel(self, *, principal: Principal, batch_id: str) -> Batch:
        await self.get(principal=principal, batch_id=batch_id)  # its 404 as this API says it
        return await self.batches.cancel(principal=principal, batch_id=batch_id, prefix=ID_PREFIX)

    async def delete(self, *, principal: Principal, batch_id: str) -> DeletedMessageBatch:
        """An ended batch removed, its requests and results with it; 409 while it is processing (cancel
        it first, as Anthropic asks)."""
        record = await self.get(principal=principal, batch_id=batch_id)
        if record.batch.status not in TERMINAL:
            raise Conflict(
                "the message batch is still processing: cancel it, and delete it once it has ended",
                code="batch_not_ended",
                retry=False,  # the SDKs retry a 409 within seconds; a batch takes minutes or hours
            )
        for file_id in (record.batch.input_file_id, record.batch.output_file_id):
            if file_id is not None:
                with contextlib.suppress(NotFound):
                    await self.batches.files.delete(tenant_id=record.tenant_id, file_id=file_id, held=True)
        await self.batches.store.forget(record)
        return DeletedMessageBatch(id=record.batch.id)

    async def results(self, *, principal: Principal, batch_id: str) -> tuple[int, AsyncIterator[bytes]]:
        """The results file's size and bytes (JSONL); 409 before the batch ends. A batch that ended with
        no results file (it failed before writing one) has none: empty."""
        record = await self.get(principal=principal, batch_id=batch_id)
        if record.batch.status not in TERMINAL:
            raise Conflict(
                "the message batch is still processing: its results are there once it has ended "
                "(processing_status `ended`, `results_url` set)",
                code="batch_not_ended",
                retry=False,  # the SDKs retry a 409 within seconds; a batch takes minutes or hours
            )
        if record.batch.output_file_id is None:
            return 0, _nothing()
        file, chunks = await self.batches.files.open(
            tenant_id=record.tenant_id, file_id=record.batch.output_file_id, held=True
        )
        return file.bytes, chunks


class RequestLines:
    """A create request's body, read as it arrives (`scan.Scanner`), as the runner reads a batch's input
    file: JSONL, one line a request. Every request is checked as it comes, and the first refused stops the
    lines; the body is read to its end all the same, so that it is refused as it was when it was read
    whole: 400 `invalid_json` for a body that is not a JSON object, then 400 for `requests` (missing, not
    a list, none or more than 100,000), then the first request refused (`param` `requests.<i>...`: its
    fields, its `custom_id` used before, its `params` nested deeper than can be written, 413 larger than
    POST /v1/messages takes). A request
    is checked and written within the loop's turn its last byte arrived in, the event loop serving the
    replica's other requests between STEP of them."""

    def __init__(self, body: AsyncIterable[bytes], *, max_body_bytes: int) -> None:
        self.body = body
        self.max_body_bytes = max_body_bytes
        self.count = 0  # the requests read
        self.bytes = 0  # the lines' bytes
        self._seen: dict[str, int] = {}
        # What the requests say, for an Idempotency-Key's retry to be compared by: each one's custom_id and
        # params with their keys sorted, so that other key orders and whitespace are the same batch.
        self.digest = hashlib.sha256()

    async def lines(self) -> AsyncIterator[bytes]:
        """The lines, as many at once as a chunk of the body completes; raises what refuses the body once
        all of it has come (413 for a body over its limit: as soon as it is, from `body`)."""
        scanner = Scanner(max_value_bytes=max_line_bytes(self.max_body_bytes))
        bad_json: BadJSON | None = None
        refused: APIError | None = None
        async for chunk in self.body:
            try:
                items = scanner.feed(chunk)
            except BadJSON as exc:
                bad_json = bad_json or exc
                continue
            done: list[bytes] = []
            for item in items:
                index, self.count = self.count, self.count + 1
                if index % STEP == STEP - 1:
                    await asyncio.sleep(0)
                if refused is not None or index >= MAX_MESSAGE_LINES:
                    continue
                try:
                    done.append(self._line(index, item))
                except APIError as exc:
                    refused = exc
            if done and refused is None:
                self.bytes += sum(len(line) for line in done)
                yield b"".join(done)
        try:
            body = scanner.close()
        except BadJSON as exc:
            bad_json = bad_json or exc
        if bad_json is not None:
            message = "Request body is empty; expected a JSON object"
            if str(bad_json) != "the body is empty":
                message = f"Request body is not valid JSON: {bad_json}"
            raise InvalidRequest(message, code="invalid_json")
        _check_body(body, self.count, max_body_bytes=self.max_body_bytes)
        if refused is not None:
            raise refused

    def _line(self, index: int, item: Any) -> bytes:
        if isinstance(item, Oversized):
            raise _too_large(index, "", item.size, self.max_body_bytes)
        try:
            request = BatchRequest.model_validate(item)
        except ValidationError as exc:
            errors = [{**e, "loc": ("requests", index, *e["loc"])} for e in exc.errors()]
            raise invalid_fields(errors) from exc
        if (first := self._seen.setdefault(request.custom_id, index)) != index:
            raise InvalidRequest(
                f"custom_id {request.custom_id!r} is used by requests {first} and {index}: each "
                "request's custom_id must be unique within the batch",
                code="duplicate_custom_id",
                param=f"requests.{index}.custom_id",
            )
        try:
            params = orjson.dumps(request.params)
        except orjson.JSONEncodeError as exc:  # read (orjson reads 1,024 levels), too deep to write again
            raise bounds.too_deep(f"requests.{index}.params", exc) from None
        if len(params) > self.max_body_bytes:
            raise _too_large(index, f" ({request.custom_id!r})", len(params), self.max_body_bytes)
        canonical = orjson.dumps(request.params, option=orjson.OPT_SORT_KEYS)  # as deep as `params`
        self.digest.update(orjson.dumps(request.custom_id) + b":" + canonical + b"\n")
        line = {"custom_id": request.custom_id, "method": "POST", "url": MESSAGES}
        return orjson.dumps({**line, "body": orjson.Fragment(params)}) + b"\n"


async def requests_file(body: bytes, *, max_body_bytes: int) -> tuple[int, bytes]:
    """A whole body's requests as `RequestLines` reads them (handed over in the 64 KiB chunks a socket
    gives): their number and the input file."""
    lines = RequestLines(_chunked(body), max_body_bytes=max_body_bytes)
    data = b"".join([part async for part in lines.lines()])
    return lines.count, data


async def _chunked(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _too_large(index: int, named: str, size: int, max_body_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"request {index}{named}: its params are {size} bytes, more than POST /v1/messages takes "
        f"({max_body_bytes} bytes, SWITCHYARD_MAX_BODY_BYTES)",
        param=f"requests.{index}.params",
    )


def _check_body(body: Body, count: int, *, max_body_bytes: int) -> None:
    """The body's `requests` as `CreateMessageBatch` takes them (400 as pydantic words it), and its other
    members no larger than a request may be (413: they are read, never kept)."""
    if body.repeated:
        raise InvalidRequest(
            "requests: given more than once in the body", code="invalid_value", param="requests"
        )
    if body.requests != "array":  # missing, or not a list: pydantic says which
        stand_in = {} if body.requests == "missing" else {"requests": body.value}
        try:
            _Requests.model_validate(stand_in)
        except ValidationError as exc:
            raise invalid_fields(exc.errors()) from exc
    if not 1 <= count <= MAX_MESSAGE_LINES:
        wording = (
            "List should have at least 1 item after validation, not 0"
            if count == 0
            else f"List should have at most {MAX_MESSAGE_LINES} items after validation, not {count}"
        )
        raise InvalidRequest(f"requests: {wording}", code="invalid_value", param="requests")
    if body.oversized is not None:
        name, size = body.oversized
        raise RequestTooLarge(
            f"{name[:64]!r}: {size} bytes, more than a member of the body other than `requests` may be "
            f"({max_line_bytes(max_body_bytes)} bytes)",
            param=name[:64] or None,
        )


class _Requests(BaseModel):
    """`CreateMessageBatch` with its requests not read (`RequestLines` reads them one by one)."""

    requests: list[Any] = Field(min_length=1, max_length=MAX_MESSAGE_LINES)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""


__all__ = ["MAX_BYTES", "MessageBatches", "RequestLines", "message_batch", "requests_file"]
