"""`Idempotency-Key` on POST /v1/tasks: a client that retries a submission after a timeout or a dropped
connection gets the task its first request created, not a second task and a second charge.

The key is claimed before its task is published (`keyed`: the claim decides, across replicas, which body
runs and which task id a retry gets). The task id is derived from the organisation, the key and the period
of KEEP_S (seven days) the task was submitted in; a retry that finds no claim (a task stored before claims
were, or that outlived its claim) looks for the task under this period's id and the previous one's, so a
retry within KEEP_S of the first request finds its task (kept KEEP_S from its last change), and a key used
again after its task expired makes a new task under a new id. (Under the expired task's id it would run
unbilled: billing charges a task id once, and the ledger records each of its events once.) A retry must
carry the same request, or it is refused with 409: the same JSON (`digest`), whatever its keys' order and
whitespace, as another client library (or another run of the same one) writes it.

What is kept of the body (with the claim and the task, in the tasks bucket) is that digest keyed by the
deployment's secret (`BodyKey`, HMAC-SHA256; taskapi/body_key.py): a plain SHA-256 of the body would let
whoever reads the bucket confirm a guessed prompt. Digests kept before (the plain SHA-256 of the body's
JSON, or of its bytes) are still compared by, so a retry across the upgrade finds its task.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from fastapi import Request

from switchyard.common.ids import derived_id
from switchyard.gateway.errors import Conflict, InvalidRequest
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.taskapi.store import KEEP_S

HEADER = "idempotency-key"
MAX_KEY_CHARS = 255
KEYED = "hmac-sha256:"  # how a digest kept under the deployment's secret starts (a plain one: 64 hex digits)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters", param=HEADER
        )
    return key


def digest(body: bytes | Any) -> str:
    """The SHA-256 of what a request body says (or of a value read from one): its JSON written again with
    its keys sorted and no whitespace, so that a retry whose keys come in another order, or with other
    spacing or escapes, is the same request, and any other value is not. Only this digest is kept, never
    the body. A body that is not JSON the gateway can write again (refused by the face's parser anyway) is
    digested as it came."""
    try:
        value = orjson.loads(body) if isinstance(body, bytes) else body
        canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        if not isinstance(body, bytes):
            raise
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class BodyKey:
    """The deployment's secret the kept digests are made with: HMAC-SHA256 of a body's plain digest. The
    same on every gateway replica (a retry may reach any); never logged (its repr hides it)."""

    secret: bytes = field(repr=False)

    def seal(self, plain: str) -> str:
        """The digest kept for a body whose plain SHA-256 (`digest`, hex) is `plain`."""
        return KEYED + hmac.new(self.secret, bytes.fromhex(plain), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class BodyDigest:
    """What a keyed request is compared by: `kept`, its body's `digest` sealed by the deployment's
    `BodyKey`, which is kept with the key; and the plain digests gateways kept before (`earlier`: the
    SHA-256 of the body's JSON, and of its bytes, which keys claimed before bodies were compared by their
    JSON kept), so a retry of a task they stored, sent again after an upgrade, is still the same body."""

    kept: str
    earlier: tuple[str, ...] = ()

    @classmethod
    def of(cls, body: bytes, key: BodyKey) -> BodyDigest:
        return cls.sealed(key, digest(body), hashlib.sha256(body).hexdigest())

    @classmethod
    def sealed(cls, key: BodyKey, plain: str, *earlier: str) -> BodyDigest:
        """The digest of a body whose plain SHA-256 is `plain` (kept, sealed; and as it was kept before)."""
        return cls(key.seal(plain), (plain, *earlier))

    def matches(self, kept: str) -> bool:
        if hmac.compare_digest(kept, self.kept):
            return True
        return not kept.startswith(KEYED) and kept in self.earlier


def task_ids(tenant_id: str, key: str, at: datetime) -> list[str]:
    """The id a task submitted `at` under this key takes, then the ids a task still kept may have: the
    previous period's, and the id of a task submitted before ids had periods (kept at most KEEP_S)."""
    period = int(at.timestamp() // KEEP_S)
    return [
        derived_id(f"{tenant_id}\n{key}\n{period}", "idempotency"),
        derived_id(f"{tenant_id}\n{key}\n{period - 1}", "idempotency"),
        derived_id(f"{tenant_id}\n{key}", "idempotency"),
    ]


def claim_key(tenant_id: str, key: str, *, task_id: str | None = None) -> str:
    """Where the key's claim is kept (`keyed`): a name of the organisation and the key alone (no period),
    in the tasks bucket; never a task id (the dot), so no status read reaches it. A caller's own task id
    (a batch line's) names its claim instead, so a client's key that reads like a line's is another key."""
    if task_id is not None:
        return "claim." + derived_id(task_id, "idempotency-claim-of-task")
    return "claim." + derived_id(f"{tenant_id}\n{key}", "idempotency-claim")


def reused() -> Conflict:
    return Conflict(
        "this Idempotency-Key was used with a different request body",
        code="idempotency_key_reused",
        param=HEADER,
        retry=False,
    )


def replayed(state: TaskState, body: BodyDigest) -> TaskState:
    """The task a retried request gets back; a different body under the same key is a client bug."""
    if state.request_sha256 is not None and not body.matches(state.request_sha256):
        raise reused()
    return state
