"""Promoted heads on the bus: which heads every classifier replica must use, and their files.

`switchyard classifier promote|rollback` (and `retrain --from-ledger` when it promotes) put the artifact's
two files in the object store `OBJ_CLASSIFIER_HEADS` under content-addressed names (`<sha256>.npz`,
`<sha256>.json`: a name always holds the same bytes), then point the KV key `live` of
`KV_CLASSIFIER_HEADS` at them with a compare-and-set write. The pointer carries the heads that were live
before it (the newest first, at most `KEEP`), so a rollback is one write of the previous pointer, and
rolling back twice goes two steps back. Replicas watch the key (`follower.py`) and never write it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field, ValidationError

from switchyard.classifier import artifact
from switchyard.common import kv, kv_guard, objects, provisioning, subjects
from switchyard.common.errors import ConfigurationError

KEY = "live"
KEEP = 8  # heads kept before the live ones: how far back a rollback can go
BUCKET_BYTES = 128 * 2**20  # the object store's size: the live heads and KEEP before them (~4.3 MB each)
OBJECTS_DESCRIPTION = "Switchyard: promoted classifier heads (the live ones and those before them)"
REPLICA_TTL_S = 60.0  # a replica's status entry lasts this long unless renewed


Action = Literal["baseline", "promote", "rollback"]


class NothingToRollBack(ConfigurationError):
    code = "classifier_nothing_to_roll_back"


class HeadsRef(BaseModel):
    """An artifact in the object store: its version and the sha256 of each of its two files."""

    version: str = Field(min_length=1)
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def names(self) -> tuple[str, str]:
        return f"{self.manifest_sha256}.json", f"{self.weights_sha256}.npz"

    def ref(self) -> HeadsRef:
        return HeadsRef(
            version=self.version, weights_sha256=self.weights_sha256, manifest_sha256=self.manifest_sha256
        )


class Promoted(HeadsRef):
    """The value of the key `live`: the heads every replica must classify with."""

    action: Action
    at: datetime
    note: str = ""
    before: list[HeadsRef] = Field(default_factory=list)  # the heads live before these, newest first


class ReplicaHeads(BaseModel):
    """A replica's report (KV_CLASSIFIER_REPLICAS, key: its name): what it classifies with."""

    instance: str
    model_version: str
    heads_version: str
    weights_sha256: str
    since: datetime
    promoted_revision: int | None = None  # the pointer revision it last acted on (None: none seen)
    refused: str | None = None  # the last promoted heads it refused, and why
    # the last real pointer it read, and its revision: a replica started after a forged pointer, and
    # `promote`/`rollback` over one, take the newest reported in its place (`reported`)
    pointer: Promoted | None = None
    pointer_revision: int | None = None


def ref_of(manifest_bytes: bytes, weights_bytes: bytes, version: str) -> HeadsRef:
    return HeadsRef(
        version=version,
        weights_sha256=hashlib.sha256(weights_bytes).hexdigest(),
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
    )


def promoted_after(
    current: Promoted | None, new: HeadsRef, *, at: datetime, note: str = "", action: Action = "promote"
) -> Promoted:
    """The pointer once `new` is promoted over `current` (None: nothing promoted yet)."""
    before: list[HeadsRef] = []
    if current is not None:
        before = [current.ref(), *current.before]
        if current.ref() == new.ref():  # the same heads again: a no-op's pointer keeps the history
            before = list(current.before)
    return Promoted(**new.ref().model_dump(), action=action, at=at, note=note, before=before[:KEEP])


def rolled_back(current: Promoted | None, *, at: datetime) -> Promoted:
    """The pointer once the live heads are rolled back to the ones before them."""
    if current is None:
        raise NothingToRollBack("no classifier heads were promoted: nothing to roll back")
    if not current.before:
        raise NothingToRollBack(
            f"{current.version} is the oldest promoted heads kept: nothing before it to roll back to"
        )
    previous, *older = current.before
    return Promoted(
        **previous.model_dump(),
        action="rollback",
        at=at,
        note=f"rolled back from {current.version}",
        before=older,
    )


@dataclass(frozen=True, slots=True)
class Files:
    """An artifact's two files, checked, and the reference to them."""

    manifest: bytes
    weights: bytes
    ref: HeadsRef


def read_folder(folder: Path | None) -> Files:
    """An artifact folder's two files (None: the shipped heads), checked as a replica checks them
    (ArtifactError otherwise)."""
    folder = folder or artifact.default_dir()
    manifest_path, weights_path = folder / artifact.MANIFEST, folder / artifact.WEIGHTS
    try:
        manifest_bytes, weights_bytes = manifest_path.read_bytes(), weights_path.read_bytes()
    except OSError as exc:
        raise artifact.ArtifactError(f"classifier artifact {folder}: {exc}") from exc
    heads = artifact.from_bytes(
        manifest_bytes, weights_bytes, manifest_at=manifest_path, weights_at=weights_path
    )
    return Files(manifest_bytes, weights_bytes, ref_of(manifest_bytes, weights_bytes, heads.version))


async def heads_bucket(js: JetStreamContext, *, replicas: int = 1) -> KeyValue:
    """The bucket of the pointer, created on first use (`replicas`: SWITCHYARD_STREAM_REPLICAS); with
    SWITCHYARD_BUS_PROVISIONED only opened (provisioning.py)."""
    return await _open(js, heads_config(replicas=replicas))


async def replicas_bucket(js: JetStreamContext, *, replicas: int = 1) -> KeyValue:
    return await _open(js, replicas_config(replicas=replicas))


def heads_config(*, replicas: int) -> api.StreamConfig:
    return provisioning.kv_config(
        subjects.KV_CLASSIFIER_HEADS,
        replicas=replicas,
        description="Switchyard: the classifier heads in force (key live)",
    )


def replicas_config(*, replicas: int) -> api.StreamConfig:
    return provisioning.kv_config(
        subjects.KV_CLASSIFIER_REPLICAS,
        ttl_s=REPLICA_TTL_S,
        replicas=replicas,
        description="Switchyard: the heads each classifier replica runs",
    )


def objects_config(*, replicas: int) -> api.StreamConfig:
    return provisioning.object_config(
        subjects.OBJ_CLASSIFIER_HEADS,
        description=OBJECTS_DESCRIPTION,
        max_bytes=BUCKET_BYTES,
        replicas=replicas,
    )


async def _open(js: JetStreamContext, config: api.StreamConfig) -> KeyValue:
    """The bucket of `config` (`KV_<bucket>`), created on first use, unless only opened (kv.bucket)."""
    return await kv.bucket(
        js,
        (config.name or "")[len("KV_") :],
        ttl_s=config.max_age,
        replicas=config.num_replicas or 1,
        description=config.description,
    )


def parse(value: bytes | None) -> Promoted | None:
    """The pointer's value; ArtifactError when it cannot be read (written by hand, or by newer code)."""
    if not value:
        return None
    try:
        return Promoted.model_validate_json(value)
    except ValidationError as exc:
        raise artifact.ArtifactError(
            f"the promoted heads' pointer is unreadable: {exc.errors()[:2]}"
        ) from exc


async def live(js: JetStreamContext) -> tuple[Promoted | None, int | None]:
    """(the pointer, its revision), (None, None) when nothing was promoted."""
    try:
        bucket = await js.key_value(subjects.KV_CLASSIFIER_HEADS)
    except BucketNotFoundError:
        return None, None
    value, revision = await read_pointer(js, bucket, KEY)
    return parse(value), revision


async def read_pointer(js: JetStreamContext, bucket: KeyValue, key: str) -> tuple[bytes | None, int | None]:
    """The pointer and its revision (a `kv.update` reader); for a forged revision (kv_guard) the newest
    pointer a replica reports (`reported`), or none, with the forged revision (the write goes over it)."""
    try:
        return await kv_guard.read(bucket, key)
    except kv_guard.ForgedEntry as forged:
        pointer = await reported(js)
        return (None if pointer is None else pointer.model_dump_json().encode()), forged.revision


async def reported(js: JetStreamContext) -> Promoted | None:
    """The newest real pointer the replicas report (None: none reports one). The pointer has no running
    writer and its bucket keeps one revision, so a forged one is restored from the replicas' memory; the
    heads it names are checked against their sha256s wherever they are loaded, as any pointer's."""
    best: ReplicaHeads | None = None
    for seen in await replica_reports(js):
        if seen.pointer is None or seen.pointer_revision is None:
            continue
        if best is None or seen.pointer_revision > (best.pointer_revision or 0):
            best = seen
    return None if best is None else best.pointer


async def upload(js: JetStreamContext, files: Files, *, replicas: int = 1) -> None:
    """Puts both files in the object store (created on first use); a name already there is kept (the same
    bytes: names are their sha256)."""
    await objects.open_bucket(
        js,
        subjects.OBJ_CLASSIFIER_HEADS,
        description=OBJECTS_DESCRIPTION,
        max_bytes=BUCKET_BYTES,
        replicas=replicas,
        setting="promotion.BUCKET_BYTES",
    )
    for name, data in zip(files.ref.names(), (files.manifest, files.weights), strict=True):
        try:
            await objects.describe(js, subjects.OBJ_CLASSIFIER_HEADS, name)
            continue
        except (objects.ObjectGone, objects.ObjectUnreadable):  # forged or unreadable: written over
            pass
        await objects.write(js, subjects.OBJ_CLASSIFIER_HEADS, name, _once(data))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def fetch(js: JetStreamContext, ref: HeadsRef) -> tuple[bytes, bytes]:
    """The two files of promoted heads, each checked against its sha256 in the pointer: ArtifactError when
    one is missing or holds other bytes; TimeoutError when the store does not answer (try again)."""
    out = []
    for name, want in zip(ref.names(), (ref.manifest_sha256, ref.weights_sha256), strict=True):
        try:
            data = await objects.read(js, subjects.OBJ_CLASSIFIER_HEADS, name)
        except (objects.ObjectGone, objects.ObjectUnreadable, NotFoundError) as exc:
            raise artifact.ArtifactError(f"heads {ref.version}: {name} cannot be read: {exc}") from exc
        except nats.errors.TimeoutError as exc:
            raise TimeoutError(f"heads {ref.version}: {name} not read in time") from exc
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise artifact.ArtifactError(
                f"heads {ref.version}: {name} is corrupt: sha256 {got[:16]}... does not match {want[:16]}..."
            )
        out.append(data)
    return out[0], out[1]


async def live_files(js: JetStreamContext) -> Files | None:
    """The heads in force on the bus, checked (None: nothing promoted)."""
    promoted, _ = await live(js)
    if promoted is None:
        return None
    manifest, weights = await fetch(js, promoted)
    artifact.from_bytes(manifest, weights, manifest_at=f"{promoted.version} (promoted)")
    return Files(manifest, weights, promoted.ref())


def write_folder(files: Files, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / artifact.MANIFEST).write_bytes(files.manifest)
    (folder / artifact.WEIGHTS).write_bytes(files.weights)
    return folder


async def set_live(
    js: JetStreamContext, decide: Callable[[Promoted | None], Promoted], *, replicas: int = 1
) -> Promoted:
    """Compare-and-set of the key `live`: `decide(current)` gives the new pointer (or raises)."""
    bucket = await heads_bucket(js, replicas=replicas)

    def change(value: bytes | None) -> tuple[bytes | None, Promoted]:
        new = decide(parse(value))
        return new.model_dump_json().encode(), new

    promoted = await kv.update(bucket, KEY, change, reader=lambda b, k: read_pointer(js, b, k))
    await prune(js, [promoted.ref(), *promoted.before])
    return promoted


async def promote(
    js: JetStreamContext,
    new: Files,
    *,
    baseline: Files | None = None,
    note: str = "",
    replicas: int = 1,
    now: datetime | None = None,
) -> Promoted:
    """Puts `new` in force. When nothing was promoted yet, `baseline` (the heads the replicas run) goes
    first, so that the first promotion can be rolled back too."""
    await upload(js, new, replicas=replicas)
    at = now or datetime.now(UTC)
    current, _ = await live(js)
    base = baseline.ref if baseline is not None and current is None and baseline.ref != new.ref else None
    if base is not None and baseline is not None:
        await upload(js, baseline, replicas=replicas)

    def decide(current: Promoted | None) -> Promoted:
        if current is None and base is not None:
            current = promoted_after(None, base, at=at, action="baseline", note="the heads before promotions")
        return promoted_after(current, new.ref, at=at, note=note)

    return await set_live(js, decide, replicas=replicas)


async def rollback(js: JetStreamContext, *, now: datetime | None = None) -> Promoted:
    at = now or datetime.now(UTC)
    if (await live(js))[0] is None:  # the bucket is not made just to say so
        rolled_back(None, at=at)
    return await set_live(js, lambda current: rolled_back(current, at=at))


async def prune(js: JetStreamContext, keep: list[HeadsRef]) -> int:
    """Deletes the files no kept heads name (best effort: a failure leaves them for the next promotion). A
    forged meta (a kept file's, copied under another name by a user that may read the store) is replaced
    alone: its chunks are a kept file's (objects.delete)."""
    wanted = {name for ref in keep for name in ref.names()}
    removed = 0
    with contextlib.suppress(NotFoundError, nats.errors.Error):
        for name in await objects.names(js, subjects.OBJ_CLASSIFIER_HEADS):
            if name in wanted:
                continue
            with contextlib.suppress(nats.errors.Error):
                removed += await objects.delete(js, subjects.OBJ_CLASSIFIER_HEADS, name)
    return removed


async def report(bucket: KeyValue, status: ReplicaHeads) -> None:
    await bucket.put(kv.safe_key(status.instance), status.model_dump_json().encode())


async def replica_reports(js: JetStreamContext) -> list[ReplicaHeads]:
    try:
        bucket = await js.key_value(subjects.KV_CLASSIFIER_REPLICAS)
    except BucketNotFoundError:
        return []
    out = []
    for value in (await kv.read_all(bucket)).values():
        with contextlib.suppress(ValidationError):
            out.append(ReplicaHeads.model_validate_json(value))
    return sorted(out, key=lambda r: r.instance)
