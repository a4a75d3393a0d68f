"""A task submitted with an Idempotency-Key: one key runs exactly one body, on every replica at once.

The key is claimed (`TaskStore.take`: a compare-and-set in the tasks bucket, under a name of the
organisation and the key alone) before the task is published. The request that claims it runs its body;
any other request with that key is answered from the claim: a different body is `409
idempotency_key_reused` (even while the first is still being submitted), the same body gets the claimed
task once it is stored. Publishing first and storing after (the task API's way without a key) let two
replicas each win one half: the body whose publishing won ran, under the state of the body whose write
won, and its client was told 409.

The claim names the task id, so a retry finds the task whatever the time says: two retries either side of
the end of a seven-day period (whose ids differ) make one task, not one each. A claim whose request went
away before its task was stored (its replica stopped, the bus refused its publishing) is taken over by the
next request with the same body after CLAIM_STALE_S (at once when the publishing failed and said so): it
publishes the task under the same id, which the bus drops if the first copy did arrive within its
duplicate window (two minutes).

A request whose publishing had no ack at all (`tasks.AckLost`: the stream may hold the task, stored and
its answer lost) answers 503 but keeps its admission (the task may run and be charged: its outcome settles
it) and marks its claim uncertain, with the event id. A retry with the same body within the duplicate
window (RESEND_WITHIN_S of the claim) publishes the task again under that id, with no admission of its
own: the stream drops it if it has the first copy and stores it otherwise, so the task is in the stream
once and the retry answers 202 with it, whatever would refuse a new task by then. Past the window a
publish could store a second copy, so the retry is taken as a new submission (after the result look-up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from switchyard.common.bus import DUPLICATE_WINDOW_S
from switchyard.common.events import TaskSubmitted
from switchyard.gateway.admission import Pass
from switchyard.gateway.errors import Conflict
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.taskapi.idempotency import BodyDigest
from switchyard.gateway.taskapi.models import Claim, TaskState
from switchyard.gateway.taskapi.service import TaskRuns
from switchyard.gateway.taskapi.store import from_outcome
from switchyard.gateway.tasks import AckLost

# A claim with no stored task this long after it was taken was left by a request that went away (its
# replica killed): far longer than a publishing and a state write take. Taking over a request still alive
# (a publishing retried through a bus outage) is harmless: same body, same id, so the bus stores the task
# once and the bucket its state once (the other request answers from it); well within the bus's
# duplicate window (two minutes), which drops the second copy.
CLAIM_STALE_S = 10.0
# How long a request finding the key claimed for its own body waits for that task to be stored.
STORED_WAIT_S = 5.0
ATTEMPTS = 3
# How long after its claim a task whose publishing's ack was lost is published again by a retry: inside
# the stream's duplicate window from its first publish (which came after the claim), with a margin for
# clocks and the publish's own retries.
RESEND_WITHIN_S = DUPLICATE_WINDOW_S - 20.0

Admit = Callable[[TaskSubmitted], Awaitable[Pass]]


def in_use() -> Conflict:
    return Conflict(
        "a request with this Idempotency-Key and this body is being submitted; retry in a moment",
        code="idempotency_key_in_use",
        param=idempotency.HEADER,
        headers={"Retry-After": "1"},
        retry=True,
    )


async def replay(
    runs: TaskRuns,
    *,
    claim_key: str,
    digest: BodyDigest,
    kept: list[str],
    tenant_id: str | None = None,
    key: str | None = None,
) -> TaskState | None:
    """The task a request with this key and body gets back, if there is one: asked before anything that
    would refuse a new task (the model's provider gone, a guardrail, the key's allow-list), since a retry
    runs nothing. 409 for another body, or while the claiming request is still submitting it. With the
    request's `tenant_id` (and `key`), a claim left by a request that went away is answered with its task
    if that has run (`_claimed`)."""
    if (found := await runs.store.claim(claim_key)) is not None:
        return await _claimed(runs, found[0], digest, tenant_id=tenant_id, key=key)
    for candidate in kept:  # a task stored before claims were, or that outlived its claim
        if (existing := await runs.store.get(candidate)) is not None:
            return await runs.current(idempotency.replayed(existing, digest))
    return None


async def submit(
    runs: TaskRuns,
    task: TaskSubmitted,
    *,
    key: str,
    digest: BodyDigest,
    admit: Admit,
    claim_key: str | None = None,
) -> TaskState:
    """`task` submitted under `key` once `replay` found none, or the task the key's claim names answered
    (a request that claimed it meanwhile); `claim_key`: the claim's name when not the key's (a batch
    line's)."""
    claim_key = claim_key or idempotency.claim_key(task.tenant_id, key)
    for _ in range(ATTEMPTS):
        over: int | None = None
        if (found := await runs.store.claim(claim_key)) is not None:
            claim, over = found
            if (state := await _claimed(runs, claim, digest, tenant_id=task.tenant_id, key=key)) is not None:
                return state
            task = task.model_copy(update={"task_id": claim.task_id})
            if claim.uncertain and _age_s(claim) < RESEND_WITHIN_S:
                state = await runs.resend(
                    task=task, budget=claim.budget, idempotency_key=key, request_sha256=digest.kept
                )
                return idempotency.replayed(state, digest)
        admitted = await admit(task)
        mine = Claim(task_id=task.task_id, request_sha256=digest.kept, claimed_at=datetime.now(UTC))
        try:
            revision = await runs.store.take(claim_key, mine, over=over)
        except BaseException:
            await admitted.close()
            raise
        if revision is None:  # another request claimed it first: answered from its claim
            await admitted.close()
            continue
        try:
            if (
                over is not None
                and (done := await runs.store.stored_outcome(task.tenant_id, task.task_id)) is not None
            ):
                await admitted.close()  # the request that went away had published it, and it ran
                told = from_outcome(done).model_copy(
                    update={"idempotency_key": key, "request_sha256": digest.kept}
                )
                await runs.store.create(told)
                return told
            state = await runs.submit(
                task=task, admitted=admitted, idempotency_key=key, request_sha256=digest.kept
            )
        except AckLost as lost:  # the task may be in the stream: its admission stands (`TaskRuns.submit`)
            uncertain = {"uncertain": True, "event_id": lost.event_id, "budget": admitted.budget}
            await runs.store.uncertain(claim_key, mine.model_copy(update=uncertain), revision)
            raise
        except BaseException:
            await admitted.close()  # once, however many paths close it
            await runs.store.unsent(claim_key, mine, revision)
            raise
        return idempotency.replayed(state, digest)
    raise in_use()


async def _claimed(
    runs: TaskRuns, claim: Claim, digest: BodyDigest, *, tenant_id: str | None = None, key: str | None = None
) -> TaskState | None:
    """The task a claim names, as it is now; None when the claim may be taken over (its request went
    away before storing the task). Raises 409 for another body, or while the claiming request is still
    submitting it. Such a request may have published the task all the same (its ack lost: a leader
    elected, a node lost, its replica killed): a task of `tenant_id` that has run since is answered with
    its result. Taken over, the request would be a new one, and whatever refuses a new task then (a
    limit, a budget, a check) would be the answer to a client whose task ran and was charged. A claim whose
    publishing's ack was lost (`uncertain`) is published again by `submit` within the duplicate window."""
    if not digest.matches(claim.request_sha256):
        raise idempotency.reused()
    loop = asyncio.get_running_loop()
    until = loop.time() + STORED_WAIT_S
    while (state := await runs.store.get(claim.task_id)) is None:
        if claim.unsent or claim.uncertain or _age_s(claim) > CLAIM_STALE_S:
            if tenant_id is None:
                return None
            return await _finished(runs, tenant_id, claim.task_id, key=key, digest=digest)
        if loop.time() >= until:
            raise in_use()
        await asyncio.sleep(0.05)
    return await runs.current(idempotency.replayed(state, digest))


async def _finished(
    runs: TaskRuns, tenant_id: str, task_id: str, *, key: str | None, digest: BodyDigest
) -> TaskState | None:
    """The task told from its result on the stream, stored as its state; None if it has no result."""
    if (done := await runs.store.stored_outcome(tenant_id, task_id)) is None:
        return None
    told = from_outcome(done).model_copy(update={"idempotency_key": key, "request_sha256": digest.kept})
    if not await runs.store.create(told):  # stored meanwhile (another retry, the request that went away)
        return await runs.current(await runs.store.get(task_id) or told)
    return told


def _age_s(claim: Claim) -> float:
    return time.time() - claim.claimed_at.timestamp()
