"""The Batch API's operations, each scoped to the caller's organisation."""

from __future__ import annotations

import time

from pydantic import ValidationError

from switchyard.gateway.batches import idempotent
from switchyard.gateway.batches.lines import ENDPOINTS
from switchyard.gateway.batches.models import (
    COMPLETION_WINDOW_S,
    Batch,
    BatchList,
    BatchRecord,
    CreateBatch,
)
from switchyard.gateway.batches.runner import BatchRunner
from switchyard.gateway.batches.store import OPENAI_PREFIX, BatchStore, new_batch_id
from switchyard.gateway.bodies import json_object
from switchyard.gateway.errors import Conflict, InvalidRequest, NotFound, RateLimited, invalid_fields
from switchyard.gateway.files.share import Share
from switchyard.gateway.files.store import FileStore, file_key
from switchyard.gateway.metrics import BATCHES_CREATED
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.tenants import Principal

WINDOWS = ("24h",)
MAX_LIST = 100


class Batches:
    def __init__(
        self,
        store: BatchStore,
        files: FileStore,
        runner: BatchRunner,
        *,
        share: Share,
        body_key: idempotency.BodyKey,
        max_unfinished: int = 10,
    ) -> None:
        self.store = store
        self.body_key = body_key  # seals an Idempotency-Key's body digest (taskapi/idempotency.py)
        self.files = files
        self.share = share
        self.runner = runner
        self.max_unfinished = max_unfinished

    async def create(self, *, principal: Principal, body: bytes, key: str | None = None) -> Batch:
        """A new batch, `validating`: the runner reads and checks its file, then runs it. 404 for an input
        file that is not the organisation's; 507 while the organisation's files hold its share of the store
        (the batch's output would go past it: it is written whatever the share once the batch ends). With
        an Idempotency-Key `key`, the batch its first request created (`idempotent`), before any check."""
        claim = idempotent.claim_key(principal.tenant_id, key, OPENAI_PREFIX) if key is not None else None
        sha256 = idempotency.BodyDigest.of(body, self.body_key)
        if claim is not None and (replayed := await self.replayed(claim, sha256)) is not None:
            return replayed
        try:
            asked = CreateBatch.model_validate(json_object(body))
        except ValidationError as exc:
            raise invalid_fields(exc.errors()) from exc
        if asked.endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"endpoint {asked.endpoint!r} is not supported in a batch here: one of "
                + ", ".join(ENDPOINTS),
                code="invalid_value",
                param="endpoint",
            )
        if asked.completion_window not in WINDOWS:
            raise InvalidRequest(
                f"completion_window must be {' or '.join(WINDOWS)}",
                code="invalid_value",
                param="completion_window",
            )
        try:
            file = await self.files.get(tenant_id=principal.tenant_id, file_id=asked.input_file_id)
        except NotFound as exc:
            exc.param = "input_file_id"  # the field of this request that names it
            raise
        if file.purpose != "batch":
            raise InvalidRequest(
                f"the input file's purpose is {file.purpose!r}: a batch reads a file uploaded with purpose "
                "'batch'",
                code="invalid_value",
                param="input_file_id",
            )
        await self.share.check(
            self.files,
            principal.tenant_id,
            adding=None,
            then="a batch writes its output and error files there; delete files you no longer need "
            "(finished batches' output and error files among them), then create the batch",
        )
        await self.check_unfinished(principal.tenant_id)
        now = int(time.time())
        batch_id = new_batch_id()
        if claim is not None:
            held = await idempotent.take(
                self.store.bucket, claim, idempotent.Claim(batch_id=batch_id, request_sha256=sha256.kept)
            )
            if not sha256.matches(held.request_sha256):
                raise idempotency.reused()
            batch_id = held.batch_id
        batch = Batch(
            id=batch_id,
            endpoint=asked.endpoint,
            input_file_id=file.id,
            completion_window=asked.completion_window,
            status="validating",
            created_at=now,
            expires_at=now + COMPLETION_WINDOW_S,
            metadata=asked.metadata,
        )
        record = BatchRecord(
            batch=batch,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            api_key_id=principal.api_key_id,
            output_expires_s=asked.output_expires_after.seconds if asked.output_expires_after else None,
            idempotency_claim=claim,
        )
        if not await self.store.create(record):  # a retry under its key made it a moment ago
            return (await self.store.get(tenant_id=principal.tenant_id, batch_id=batch_id)).batch
        BATCHES_CREATED.labels(batch.endpoint).inc()
        self.runner.poke()
        return batch

    async def replayed(self, claim: str, sha256: idempotency.BodyDigest) -> Batch | None:
        """The batch a create's Idempotency-Key claim names, when it exists; 409 for another body."""
        held = await idempotent.read(self.store.bucket, claim)
        if held is None:
            return None
        if not sha256.matches(held.request_sha256):
            raise idempotency.reused()
        record = await self.store.read(held.batch_id)
        return record.batch if record is not None else None

    async def check_unfinished(self, tenant_id: str) -> None:
        """429 `batch_limit_exceeded` when the organisation has its limit of batches not finished yet
        (OpenAI's and message batches together)."""
        unfinished = await self.store.unfinished(tenant_id=tenant_id)
        if unfinished >= self.max_unfinished:
            raise RateLimited(
                f"your organisation has {unfinished} batches not finished yet, its limit "
                f"(SWITCHYARD_BATCH_ORG_UNFINISHED is {self.max_unfinished}): create this one once one of "
                "them has ended (or cancel one)",
                code="batch_limit_exceeded",
                headers={"retry-after": "60"},
                retry=False,  # until one of them ends, which the SDKs' retries, a minute apart, cannot see
            )

    async def inputs_in_use(self, tenant_id: str | None) -> set[str]:
        """The input files of the organisation's unfinished batches (None: every organisation's), as the
        file store's keys: they do not expire before their batch ends (`FileStore.in_use`)."""
        if tenant_id is None:
            ids = await self.store.active()
        else:
            ids = await self.store.unfinished_ids(tenant_id=tenant_id)
        records = [await self.store.read(batch_id) for batch_id in ids]
        return {file_key(r.tenant_id, r.batch.input_file_id) for r in records if r is not None}

    async def retrieve(self, *, principal: Principal, batch_id: str) -> Batch:
        return (await self.store.get(tenant_id=principal.tenant_id, batch_id=batch_id)).batch

    async def list(self, *, principal: Principal, after: str | None, limit: int) -> BatchList:
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be 1 to {MAX_LIST}", code="invalid_value", param="limit")
        page, more = await self.store.page(tenant_id=principal.tenant_id, after=after, limit=limit)
        return BatchList(
            data=page,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
            has_more=more,
        )

    async def cancel(self, *, principal: Principal, batch_id: str, prefix: str = OPENAI_PREFIX) -> Batch:
        """`cancelling` (the runner cancels what runs, writes the partial output, then `cancelled`); a
        batch already cancelling or cancelled is answered as it stands; one that ended otherwise is 409.
        `prefix`: the kind of batch asked for (a message batch's `msgbatch_`)."""
        await self.store.get(tenant_id=principal.tenant_id, batch_id=batch_id, prefix=prefix)
        now = int(time.time())

        def cancelling(r: BatchRecord) -> BatchRecord | None:
            status = r.batch.status
            if status in ("cancelling", "cancelled"):
                return None
            if status not in ("validating", "in_progress"):
                raise Conflict(
                    f"the batch is {status}: only a batch validating or in progress can be cancelled"
                    if prefix == OPENAI_PREFIX  # a message batch's statuses are in_progress and ended
                    else "the message batch has ended: only a message batch in progress can be cancelled",
                    code="batch_not_cancellable",
                    retry=False,
                )
            batch = r.batch.model_copy(update={"status": "cancelling", "cancelling_at": now})
            return r.model_copy(update={"batch": batch})

        record = await self.store.change(batch_id, cancelling)
        assert record is not None  # batches are never deleted while their organisation can read them
        self.runner.poke()
        return record.batch
