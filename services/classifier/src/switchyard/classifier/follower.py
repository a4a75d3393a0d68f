"""A replica follows the promoted heads: no restart for a promotion or a rollback to take effect.

At start (before its consumer pulls a task) the replica reads the key `live` and, if heads were promoted,
loads them instead of the ones it was started with; then it watches the key. Each new pointer's files are
fetched and checked (each file's sha256 against the pointer, the weights' against the manifest, the label
map, the features version, every shape; then against the running encoder: its sha256, its vector size),
all in a worker thread, so the event loop goes on receiving and publishing meanwhile. The checked heads
replace the live ones in one reference assignment between micro-batches (`Classifier.predict` reads it
once per batch), so every prediction, and the event made of it, names the heads that made it. Heads that
fail a check are refused: the replica keeps classifying with what it had, logs one line at ERROR, counts
`switchyard_classifier_heads_refused_total{reason}` and says so in its status entry.

The watch only wakes the replica up; every `poll_s` it also reads the key, so a watch lost in a reconnect
(a nats-server restart ends it silently) delays a promotion by at most that long, and a change found by
the poll, not the watch, makes it watch anew. Each replica writes what it runs into KV_CLASSIFIER_REPLICAS
(`switchyard classifier heads` lists them), renewed every `report_s`.

The pointer is read through kv_guard (the watch only wakes the replica): a revision the server stored on a
client's behalf (README, Trust) is refused like heads that fail a check (`reason="forged"`), and the files
of any pointer are checked against its sha256s, so neither a forged pointer nor a forged object is run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import nats.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.classifier import artifact, metrics, promotion
from switchyard.classifier.classify import Classifier, Live
from switchyard.common import kv, kv_guard
from switchyard.common.background import cancel
from switchyard.common.transient import Failures

log = logging.getLogger(__name__)


class HeadsFollower:
    def __init__(
        self,
        classifier: Classifier,
        *,
        instance: str,
        poll_s: float = 5.0,
        report_s: float = 20.0,
        replicas: int = 1,
    ) -> None:
        self.classifier = classifier
        self.instance = instance
        self.poll_s = poll_s
        self.report_s = report_s
        self.replicas = replicas  # JetStream replicas of the buckets, if this replica creates them
        self._js: JetStreamContext | None = None
        self._heads: KeyValue | None = None
        self._replicas: KeyValue | None = None
        self._seen: int | None = None  # the pointer revision last acted on
        self._pointer: tuple[promotion.Promoted, int] | None = None  # the last real pointer, its revision
        self._refused: str | None = None
        self._since = datetime.now(UTC)
        self._reported = 0.0
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._failures = Failures(log)  # a timeout while the bucket's stream elects its leader: a line
        metrics.HEADS.labels(classifier.model_version).set(1)

    async def start(self, js: JetStreamContext) -> None:
        self._js = js
        self._heads = await promotion.heads_bucket(js, replicas=self.replicas)
        self._replicas = await promotion.replicas_bucket(js, replicas=self.replicas)
        try:
            await self.check()
        except Exception as exc:  # the bus, briefly: serve with the heads at hand, the watch catches up
            self._failures.failed(
                exc, "promoted classifier heads not read at start; trying again in %.0f s", self.poll_s
            )
        self._watcher = await self._heads.watch(promotion.KEY, include_history=False)
        self._task = asyncio.create_task(self._follow(), name="classifier-heads")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._unwatch()
        if self._replicas is not None:
            with contextlib.suppress(Exception):
                await self._replicas.delete(kv.safe_key(self.instance))

    async def _unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _follow(self) -> None:
        while True:
            woken = False
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                if self._watcher is None:
                    await asyncio.sleep(self.poll_s)
                else:
                    await self._watcher.updates(timeout=self.poll_s)  # type: ignore[no-untyped-call]
                    woken = True
            try:
                if await self.check() and not woken:
                    # a change the watch did not bring: it was lost (a nats-server restart ends it
                    # silently); a new one brings the next change at once instead of at the next poll
                    await self._unwatch()
                    assert self._heads is not None
                    self._watcher = await self._heads.watch(promotion.KEY, include_history=False)
                    log.info("the promoted heads' key came by the poll, not the watch: watching it anew")
            except Exception as exc:  # the bus, briefly: the next wake-up tries again
                self._failures.failed(
                    exc, "promoted classifier heads not checked; trying again in %.0f s", self.poll_s
                )
                await asyncio.sleep(min(self.poll_s, 1.0))

    async def check(self) -> bool:
        """Acts on the pointer if it changed since the last look (True); renews the status entry when due."""
        assert self._heads is not None
        try:
            value, revision = await kv_guard.read(self._heads, promotion.KEY)
        except kv_guard.ForgedEntry as forged:
            if forged.revision == self._seen:
                return False
            self._seen = forged.revision
            why = "stored by the server on a client's behalf, not promoted"
            self._refuse("forged", f"revision {forged.revision}", why, self.classifier.live)
            if self._pointer is None:  # started since: the pointer the running replicas act on
                await self._adopt()
            await self._report()
            return True
        if revision != self._seen:
            done = await self._apply(value, revision)
            if done:
                self._seen = revision
                self._held(value, revision)
            await self._report()
            return True
        if time.monotonic() - self._reported >= self.report_s:
            await self._report()
        return False

    def _held(self, value: bytes | None, revision: int | None) -> None:
        with contextlib.suppress(artifact.ArtifactError):
            pointer = promotion.parse(value)
            if pointer is not None and revision is not None:
                self._pointer = (pointer, revision)

    async def _adopt(self) -> None:
        """A forged pointer read before any real one: the newest one the other replicas report."""
        assert self._js is not None
        pointer = await promotion.reported(self._js)
        if pointer is None:
            return
        log.warning(
            "promoted classifier heads: the pointer is forged, taking %s as the replicas report it",
            pointer.version,
        )
        if await self._apply(pointer.model_dump_json().encode(), self._seen):
            self._pointer = (pointer, 0)  # not reported on: a replica's own read of the pointer is newer

    async def _apply(self, value: bytes | None, revision: int | None) -> bool:
        """False when the pointer's files could not be read in time (looked at again on the next wake-up)."""
        current = self.classifier.live
        try:
            promoted = promotion.parse(value)
        except artifact.ArtifactError as exc:
            self._refuse("unreadable", f"revision {revision}", exc.message, current)
            return True
        if promoted is None:  # never promoted, or the key deleted: keep what runs
            return True
        if promoted.weights_sha256 == current.heads.manifest.get("weights_sha256") and (
            promoted.version == current.heads.version
        ):
            self._refused = None
            return True
        assert self._js is not None
        try:
            manifest_bytes, weights_bytes = await promotion.fetch(self._js, promoted)
            live = await asyncio.to_thread(self._prepare, manifest_bytes, weights_bytes, promoted)
        except artifact.IncompatibleHeads as exc:
            self._refuse("incompatible", promoted.version, exc.message, current)
            return True
        except artifact.ArtifactError as exc:
            self._refuse("corrupt", promoted.version, exc.message, current)
            return True
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("promoted classifier heads %s not read yet (%s): trying again", promoted.version, exc)
            return False
        self.classifier.live = live  # the swap: the next batch is classified with these
        self._since, self._refused = datetime.now(UTC), None
        delay = (self._since - promoted.at).total_seconds()
        metrics.HEADS.clear()
        metrics.HEADS.labels(live.model_version).set(1)
        metrics.HEADS_SWAPS.inc()
        metrics.HEADS_SWAP_DELAY.observe(max(delay, 0.0))
        log.info(
            "classifier heads swapped: %s -> %s (%s of %s, %.3f s after it was written)",
            current.model_version,
            live.model_version,
            promoted.action,
            promoted.at.isoformat(),
            delay,
        )
        return True

    def _prepare(self, manifest_bytes: bytes, weights_bytes: bytes, promoted: promotion.Promoted) -> Live:
        heads = artifact.from_bytes(
            manifest_bytes,
            weights_bytes,
            manifest_at=f"{promoted.version} ({promoted.manifest_sha256[:12]}.json, promoted)",
            weights_at=f"{promoted.version} ({promoted.weights_sha256[:12]}.npz, promoted)",
        )
        return self.classifier.prepare(heads)

    def _refuse(self, reason: str, what: str, why: str, current: Live) -> None:
        self._refused = f"{what}: {why}"
        metrics.HEADS_REFUSED.labels(reason).inc()
        log.error(
            "promoted classifier heads refused (%s), still classifying with %s: %s",
            reason,
            current.model_version,
            self._refused,
        )

    async def _report(self) -> None:
        if self._replicas is None:
            return
        live = self.classifier.live
        status = promotion.ReplicaHeads(
            instance=self.instance,
            model_version=live.model_version,
            heads_version=live.heads.version,
            weights_sha256=str(live.heads.manifest.get("weights_sha256", "")),
            since=self._since,
            promoted_revision=self._seen,
            refused=self._refused,
        )
        if self._pointer is not None and self._pointer[1]:
            status.pointer, status.pointer_revision = self._pointer
        try:
            await promotion.report(self._replicas, status)
            self._reported = time.monotonic()
        except nats.errors.Error as exc:
            log.warning("classifier heads status not written: %s", exc)
