"""What each line of a finished batch became: its output line (the endpoint's answer, rendered from the
task's result event as the endpoint renders it) or its error line (the endpoint's error, or a line the
batch never ran). Read from the task store and the batch's refused lines, so any replica can write the
files, also after taking the batch over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from switchyard.common.events import TaskCompleted
from switchyard.gateway import completions
from switchyard.gateway.batches import lines, render
from switchyard.gateway.batches.models import BatchRecord, LineError
from switchyard.gateway.batches.store import BatchStore
from switchyard.gateway.errors import APIError
from switchyard.gateway.state import Gateway
from switchyard.gateway.tenants import Principal

Kind = Literal["completed", "failed", "unfinished"]
UNAVAILABLE = LineError(
    status=500,
    type="api_error",
    code="result_unavailable",
    message="this request's result is not stored (any more): it cannot be told",
)


@dataclass
class Results:
    gw: Gateway
    store: BatchStore
    record: BatchRecord
    principal: Principal  # the creator: the output guardrails are theirs

    async def of(self, line: lines.Line, *, final: str) -> tuple[Kind, bytes]:
        """The line's output line (`completed`) or error line (`failed`; `unfinished`: the batch ended as
        `final`, cancelled or expired, before it ran)."""
        batch_id = self.record.batch.id
        task_id = render.task_id(self.record.tenant_id, batch_id, line.index)
        args = (batch_id, line.index, line.custom_id)
        state = await self.gw.runs.store.get(task_id)
        if state is None:
            refused = await self.store.line_error(batch_id, line.index)
            if refused is not None:
                return "failed", render.failed(*args, request_id=task_id, error=refused)
        elif state.status == "completed":
            return await self._answer(line, task_id)
        elif state.status in ("failed", "timed_out"):
            return "failed", render.failed(*args, request_id=task_id, error=render.task_error(state))
        if final == "completed":
            return "failed", render.failed(*args, request_id=task_id, error=UNAVAILABLE)
        return "unfinished", render.unfinished(*args, ended=final)

    async def _answer(self, line: lines.Line, task_id: str) -> tuple[Kind, bytes]:
        """What the endpoint answers for the line's completed task (its output guardrails included)."""
        args = (self.record.batch.id, line.index, line.custom_id)
        done = await self.gw.runs.store.stored_outcome(task_id)
        if not isinstance(done, TaskCompleted):
            return "failed", render.failed(*args, request_id=task_id, error=UNAVAILABLE)
        endpoint = self.record.batch.endpoint
        try:
            if self.gw.guardrails is not None:
                done = await self.gw.guardrails.screen_output(
                    done, principal=self.principal, request_id=task_id, endpoint=endpoint
                )
        except APIError as exc:
            return "failed", render.failed(*args, request_id=task_id, error=render.line_error(exc))
        parsed = lines.parse(line, endpoint, max_prompt_chars=self.gw.settings.max_prompt_chars)
        task = completions.build_task(parsed, self.principal, priority="low")
        body = lines.FACES[endpoint].render(task.model_copy(update={"task_id": task_id}), done)
        return "completed", render.succeeded(*args, request_id=task_id, body=body)
