"""`Idempotency-Key` on batch creation (POST /v1/batches and POST /v1/messages/batches), as the task API
takes it (`taskapi.idempotency`): a client that retries a create after a timeout or a dropped connection
gets the batch its first request created, not a second batch run and billed a second time. The same key
with another body is 409 `idempotency_key_reused`. Neither official SDK sends the header by itself.

The key's claim is a KV entry of the batches bucket (`k.` and a digest of the organisation, the kind of
batch and the key), created before the batch (a compare-and-set: one claim per key across replicas) and
naming the batch's id and the body's digest (`taskapi.idempotency.digest`: its JSON, whatever the order
of its keys and its whitespace); a retry that finds it answers that batch (or creates it under
that id, should the first request have stopped between claim and batch). A claim is kept as long as the
bucket keeps entries (30 days from when it was made) and purged with its batch."""

from __future__ import annotations

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from switchyard.common import kv
from switchyard.common.ids import derived_id


class Claim(BaseModel):
    batch_id: str
    request_sha256: str


def claim_key(tenant_id: str, key: str, kind: str) -> str:
    """The claim's KV key: the organisation's, the key's and the kind of batch's (`batch_`, `msgbatch_`:
    one key may name an OpenAI batch and a message batch)."""
    return "k." + derived_id(f"{tenant_id}\n{kind}\n{key}", "batch-idempotency")


async def read(bucket: KeyValue, name: str) -> Claim | None:
    value, _ = await kv.read(bucket, name)
    return Claim.model_validate_json(value) if value else None


async def take(bucket: KeyValue, name: str, claim: Claim) -> Claim:
    """The key's claim: `claim` when this request made it, else the one another request made first."""
    try:
        await bucket.create(name, claim.model_dump_json().encode())
        return claim
    except KeyWrongLastSequenceError:
        held = await read(bucket, name)
        if held is None:  # purged between the two reads: its batch is gone; claim it again
            return await take(bucket, name, claim)
        return held
