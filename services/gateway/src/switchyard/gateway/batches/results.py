"""What each line of a finished batch became: its output line (the endpoint's answer, rendered from the
task's result event as the endpoint renders it) or its error line (the endpoint's error, or a line the
batch never ran); for a message batch, its one results file in Anthropic's shape (`message_render`).
Read from the task store and the batch's refused lines, so any replica can write the files, also after
taking the batch over."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import IO, Literal

from switchyard.common import vectors
from switchyard.common.events import TaskCompleted
from switchyard.gateway import completions, embeddings
from switchyard.gateway.batches import lines, message_render, render
from switchyard.gateway.batches.models import BatchRecord, BatchUsage, LineError, RequestCounts
from switchyard.gateway.batches.store import BatchStore
from switchyard.gateway.errors import APIError, NotFound, UpstreamFailed
from switchyard.gateway.files.models import FileObject
from switchyard.gateway.state import Gateway
from switchyard.gateway.tenants import Principal

Kind = Literal["completed", "failed", "unfinished"]
READ_AT_ONCE = 64  # the lines whose results are read at the same time
UNAVAILABLE = LineError(
    status=500,
    type="api_error",
    code="result_unavailable",
    message="this request's result is not stored (any more): it cannot be told",
)

TASK_CANCELLED = LineError(
    status=409,
    type="invalid_request_error",
    code="task_cancelled",
    message="this request's task was cancelled (DELETE /v1/tasks/{id}) before it was answered",
)


@dataclass
class Results:
    gw: Gateway
    store: BatchStore
    record: BatchRecord
    principal: Principal  # the creator: the output guardrails are theirs
    kept: list[str] = field(default_factory=list)  # embedding lines' stored vectors read: deleted at the end
    usage: BatchUsage = field(default_factory=BatchUsage)  # the answered lines' tokens, as they are written

    @property
    def _messages(self) -> bool:
        return self.record.batch.endpoint == lines.MESSAGES

    @property
    def _shape(self) -> ModuleType:
        """The module that writes a result line (the same functions in each)."""
        return message_render if self._messages else render

    async def write(
        self, requests: AsyncIterator[lines.Line], *, final: str
    ) -> tuple[FileObject | None, FileObject | None, RequestCounts]:
        """The batch's output and error files (None: empty), and the counts they hold. The results are read
        in input order, READ_AT_ONCE lines at a time, their requests as `requests` gives them (read from the
        input file), and written to disk: neither the input nor the files are ever held in memory, and the
        store reads them from there in chunks. A message batch writes one file, every result in it (as
        the output file)."""
        told = {"completed": 0, "failed": 0, "unfinished": 0}
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:

            async def tell(window: list[lines.Line]) -> None:
                for kind, text in await asyncio.gather(*(self.of(line, final=final) for line in window)):
                    (output if kind == "completed" or self._messages else errors).write(text)
                    told[kind] += 1

            window: list[lines.Line] = []
            async for line in requests:
                window.append(line)
                if len(window) == READ_AT_ONCE:
                    await tell(window)
                    window = []
            await tell(window)
            out = await self._file("output", output)
            err = await self._file("error", errors)
        counts = RequestCounts(total=sum(told.values()), completed=told["completed"], failed=told["failed"])
        return out, err, counts

    async def _file(self, kind: str, content: IO[bytes]) -> FileObject | None:
        """The file written, under the id the runner chose for it (`results_files`: the same when a
        replica writes it again); one with nothing to hold is not, and one written before is removed."""
        planned = self.record.results_files
        file_id = planned[0 if kind == "output" else 1] if planned else None
        tenant_id = self.record.tenant_id
        if not content.tell():
            if file_id is not None:
                with contextlib.suppress(NotFound):
                    await self.gw.files.delete(tenant_id=tenant_id, file_id=file_id, held=True)
            return None
        content.seek(0)
        return await self.gw.files.put(
            tenant_id=tenant_id,
            purpose="message_batch" if self._messages else "batch_output",
            filename=f"{self.record.batch.id}_{kind}.jsonl",
            data=content,
            expires_after_s=self.record.output_expires_s,
            file_id=file_id,
        )

    async def of(self, line: lines.Line, *, final: str) -> tuple[Kind, bytes]:
        """The line's output line (`completed`) or error line (`failed`; `unfinished`: the batch ended as
        `final`, cancelled or expired, before it ran)."""
        batch_id = self.record.batch.id
        task_id = render.task_id(self.record.tenant_id, batch_id, line.index)
        args = (batch_id, line.index, line.custom_id)
        rid = render.request_id(task_id)  # the line's request id, as its output says it
        state = await self.gw.runs.store.get(task_id)
        if state is None:
            refused = await self.store.line_error(batch_id, line.index)
            if refused is not None:
                return "failed", self._shape.failed(*args, request_id=rid, error=refused)
        elif state.status == "completed":
            return await self._answer(line, task_id)
        elif state.status == "cancelled":
            # answered after all (billed in full: the line's), though the task store may not say so yet
            if isinstance(
                await self.gw.runs.store.stored_outcome(self.record.tenant_id, task_id), TaskCompleted
            ):
                return await self._answer(line, task_id)
            if final == "completed":  # a member cancelled it (the task API) while the batch ran
                return "failed", self._shape.failed(*args, request_id=rid, error=TASK_CANCELLED)
        elif state.status in ("failed", "timed_out"):
            embedding = self.record.batch.endpoint == lines.EMBEDDINGS
            error = render.task_error(state, embedding=embedding)
            return "failed", self._shape.failed(*args, request_id=rid, error=error)
        if final == "completed":
            return "failed", self._shape.failed(*args, request_id=rid, error=UNAVAILABLE)
        return "unfinished", self._shape.unfinished(*args, ended=final)

    async def _answer(self, line: lines.Line, task_id: str) -> tuple[Kind, bytes]:
        """What the endpoint answers for the line's completed task (its output guardrails included)."""
        args = (self.record.batch.id, line.index, line.custom_id)
        rid = render.request_id(task_id)  # the line's request id, as its output says it
        done = await self.gw.runs.store.stored_outcome(self.record.tenant_id, task_id)
        if not isinstance(done, TaskCompleted):
            return "failed", self._shape.failed(*args, request_id=rid, error=UNAVAILABLE)
        self.usage.add(done.usage)
        endpoint = self.record.batch.endpoint
        settings = self.gw.settings
        parsed = lines.parse(
            line,
            endpoint,
            max_prompt_chars=settings.max_prompt_chars,
            max_body_bytes=settings.max_body_bytes,
            aliases=self.gw.catalog.policy.aliases,
        )
        if isinstance(parsed, embeddings.Embeddings):
            return await self._vectors(line, task_id, parsed, done)
        try:
            if self.gw.guardrails is not None:
                done = await self.gw.guardrails.screen_output(
                    done, principal=self.principal, request_id=rid, endpoint=endpoint
                )
        except APIError as exc:
            return "failed", self._shape.failed(*args, request_id=rid, error=render.line_error(exc))
        task = completions.build_task(parsed, self.principal, priority="low")
        body = lines.FACES[endpoint].render(task.model_copy(update={"task_id": task_id}), done)
        return "completed", self._shape.succeeded(*args, request_id=rid, body=body)

    async def _vectors(
        self, line: lines.Line, task_id: str, parsed: embeddings.Embeddings, done: TaskCompleted
    ) -> tuple[Kind, bytes]:
        """What `POST /v1/embeddings` answers for the line's completed task: its vectors read from the
        result event or where the batch kept them (`batches.vectors`), as floats or base64 per the line's
        `encoding_format`."""
        args = (self.record.batch.id, line.index, line.custom_id)
        rid = render.request_id(task_id)  # the line's request id, as its output says it
        task = embeddings.build_task(parsed, self.principal, priority="low")
        try:
            if done.embedding is not None and self.store.vectors is not None:
                if done.embedding.object is not None:
                    self.kept.append(done.embedding.object)
                done = done.model_copy(update={"embedding": await self.store.vectors.inline(done.embedding)})
            rows = await self.gw.embedding_results.rows(task, done)
        except vectors.VectorsUnreadable as exc:
            error = UpstreamFailed(f"The task's vectors are unreadable: {exc}", code="bad_response")
            return "failed", render.failed(*args, request_id=rid, error=render.line_error(error))
        except APIError as exc:
            return "failed", render.failed(*args, request_id=rid, error=render.line_error(exc))
        body = embeddings.embeddings_json(
            rows, model=done.model, usage=done.usage, encoding_format=parsed.encoding_format
        )
        return "completed", render.succeeded(*args, request_id=rid, body=body)
