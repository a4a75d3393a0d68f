"""The operator's prune of old classifier heads (`promotion.prune`) over a forged meta (real nats-server 2.15
under the embedded run's permissions): the classifier's user, which may only read the heads' store, has the
server copy a kept file's meta under another name (a direct get answered to its meta subject); the prune
deletes that name, and must not purge the kept file's chunks, which the forged meta names (nats-py's
`delete` did)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import nats
import pytest

from switchyard.classifier import promotion
from switchyard.classifier.promotion import HeadsRef
from switchyard.common import objects, subjects
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration


async def test_pruning_the_classifier_heads_purges_no_kept_file_through_a_forged_meta(
    guarded: GuardedBus,
) -> None:
    """The classifier's user, which may only read the heads' store, copies a kept file's meta under another
    name; `promotion.prune` (the operator's) deletes that name and must not purge the kept file's chunks."""
    operator = await nats.connect(guarded.operator_url)
    js = operator.jetstream()
    manifest, weights = b'{"labels": []}', b"weights" * 1000
    ref = HeadsRef(
        version="v1",
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        weights_sha256=hashlib.sha256(weights).hexdigest(),
    )
    for name, data in zip(ref.names(), (manifest, weights), strict=True):
        await objects.write(js, subjects.OBJ_CLASSIFIER_HEADS, name, _once(data))
    classifier = await guarded.connect("classifier")
    heads = f"OBJ_{subjects.OBJ_CLASSIFIER_HEADS}"
    kept = objects.meta_subject(subjects.OBJ_CLASSIFIER_HEADS, ref.names()[1])
    await classifier.publish(
        f"$JS.API.DIRECT.GET.{heads}.{kept}",
        reply=objects.meta_subject(subjects.OBJ_CLASSIFIER_HEADS, "old.npz"),
    )
    await classifier.flush()
    await asyncio.sleep(0.3)
    assert await promotion.prune(js, [ref]) == 1
    assert await objects.read(js, subjects.OBJ_CLASSIFIER_HEADS, ref.names()[1]) == weights
    await classifier.close()
    await operator.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
