"""A task under a hard budget (`TaskBudget`): what its admission reserved goes with it on the bus, and an
answer the budget's cap cut short is not kept for other requests."""

from __future__ import annotations

from switchyard.common.events import TaskCompleted, TaskSubmitted
from switchyard.gateway.admission import Pass


def budgeted(task: TaskSubmitted, admitted: Pass) -> TaskSubmitted:
    """The task with what its principal's hard budget reserved for it (`TaskBudget`: each answer's
    output cap, the calls covered), which the router and the executor keep to; as built without one."""
    return task if admitted.budget is None else task.model_copy(update={"budget": admitted.budget})


def uncut(task: TaskSubmitted, done: TaskCompleted | None) -> TaskCompleted | None:
    """`done`, unless it may have ended (`length`) at the cap its principal's budget set rather than at
    its client's own `max_tokens`: such an answer is not cached (another request may afford all of it)."""
    if done is None or task.budget is None or done.finish_reason != "length" or task.embedding():
        return done
    asked = task.chat().max_tokens
    return None if asked is None or task.budget.max_output_tokens < asked else done
