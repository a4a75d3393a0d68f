"""A classifier replica refuses a heads pointer the server stored on a client's behalf (real nats-server
under the embedded run's permissions, the classifier as a process). Only `operator` may write the pointer;
the classifier's own user, which writes its status bucket and only reads the pointer, has the server copy a
pointer it wrote there into `live` (a direct get answered to `$KV.<heads>.live`), naming heads that sit in
the object store but were never promoted. The replica keeps its heads and says why in its status entry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest

from switchyard.classifier import artifact, promotion
from switchyard.common import objects, subjects
from tests.integration.classifier.test_heads_promotion import started, tilted, until
from tests.support.bus_services import BusService
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration


async def test_a_forged_pointer_is_refused_and_the_heads_stay(guarded: GuardedBus, tmp_path: Path) -> None:
    shipped = artifact.load()
    folder = artifact.save(
        tmp_path / "never-promoted", tilted(shipped, "heads-never-promoted"), dict(shipped.manifest)
    )
    files = promotion.read_folder(folder)
    operator = await nats.connect(guarded.operator_url)
    classifier = await guarded.connect("classifier")
    env = {
        **guarded.env("classifier"),
        "SWITCHYARD_INSTANCE": "cl-1",
        "SWITCHYARD_CLASSIFIER_PROMOTION_POLL_S": "1",
    }
    replica = BusService("classifier", env=env, log_path=tmp_path / "cl-1.log", ping_url=guarded.operator_url)
    try:
        js = operator.jetstream()
        await promotion.upload(js, files)  # in the store, not in force
        before = await started(replica, js)
        pointer = promotion.promoted_after(None, files.ref, at=datetime.now(UTC))
        own = await classifier.jetstream().key_value(subjects.KV_CLASSIFIER_REPLICAS)
        await own.put("bait", pointer.model_dump_json().encode())
        await classifier.publish(
            f"$JS.API.DIRECT.GET.KV_{subjects.KV_CLASSIFIER_REPLICAS}.$KV.{subjects.KV_CLASSIFIER_REPLICAS}.bait",
            reply=f"$KV.{subjects.KV_CLASSIFIER_HEADS}.{promotion.KEY}",
        )
        await classifier.flush()
        await own.delete("bait")
        now = await until(js, lambda r: r.instance == "cl-1" and r.refused is not None, timeout=20)
        assert "forged" in (now.refused or "") or "client's behalf" in (now.refused or ""), now.refused
        await asyncio.sleep(2.5)  # two polls more: still not loaded
        now = await until(js, lambda r: r.instance == "cl-1")
        assert now.heads_version == before.heads_version != "heads-never-promoted"
        # the operator's promotion still goes live, over the forged revision
        await promotion.promote(js, files)
        await until(
            js, lambda r: r.instance == "cl-1" and r.heads_version == "heads-never-promoted", timeout=30
        )
    finally:
        replica.stop()
        await classifier.close()
        await operator.close()
    guarded.assert_clean(tmp_path / "cl-1.log")


async def test_a_replica_started_after_a_forged_pointer_runs_the_promoted_heads(
    guarded: GuardedBus, tmp_path: Path
) -> None:
    """The pointer has no running writer (`operator`'s CLI writes it), and the bucket keeps one revision:
    a replica started after a forgery ran the heads it shipped with, and a `promote` over the forgery
    lost the heads kept for rollback (and pruned their files). The running replicas report the pointer
    they act on: a new replica, and `promote`, take the newest reported one in place of a forged one."""
    shipped = artifact.load()
    folder = artifact.save(tmp_path / "a", tilted(shipped, "heads-a"), dict(shipped.manifest))
    files_a = promotion.read_folder(folder)
    folder = artifact.save(tmp_path / "b", tilted(shipped, "heads-b"), dict(shipped.manifest))
    files_b = promotion.read_folder(folder)
    operator = await nats.connect(guarded.operator_url)
    classifier = await guarded.connect("classifier")

    def replica(name: str) -> BusService:
        env = {**guarded.env("classifier"), "SWITCHYARD_INSTANCE": name}
        env["SWITCHYARD_CLASSIFIER_PROMOTION_POLL_S"] = "1"
        return BusService(
            "classifier", env=env, log_path=tmp_path / f"{name}.log", ping_url=guarded.operator_url
        )

    first, second = replica("cl-1"), replica("cl-2")
    try:
        js = operator.jetstream()
        baseline = promotion.read_folder(None)
        await promotion.promote(js, files_a, baseline=baseline)
        assert (await started(first, js)).heads_version == "heads-a"
        own = await classifier.jetstream().key_value(subjects.KV_CLASSIFIER_REPLICAS)
        await own.put("bait", b'{"nothing": "promoted"}')
        await classifier.publish(
            f"$JS.API.DIRECT.GET.KV_{subjects.KV_CLASSIFIER_REPLICAS}.$KV.{subjects.KV_CLASSIFIER_REPLICAS}.bait",
            reply=f"$KV.{subjects.KV_CLASSIFIER_HEADS}.{promotion.KEY}",
        )
        await classifier.flush()
        await own.delete("bait")
        await until(js, lambda r: r.instance == "cl-1" and r.refused is not None, timeout=20)
        later = await started(second, js)
        later = await until(js, lambda r: r.instance == "cl-2" and r.heads_version == "heads-a", timeout=20)
        assert later.heads_version == "heads-a"
        promoted = await promotion.promote(js, files_b)
        assert [ref.version for ref in promoted.before] == ["heads-a", baseline.ref.version]
        kept = set(await objects.names(js, subjects.OBJ_CLASSIFIER_HEADS))
        assert set(files_a.ref.names()) <= kept
    finally:
        first.stop()
        second.stop()
        await classifier.close()
        await operator.close()
