"""Every gateway replica forgets an erased organisation's semantic-cache vectors, not only the one that ran
the erasure: each follows the tenant registry (`switchyard-tenants`) on a real nats-server, and deletes an
organisation's points from its own embedded index when the registry marks it erased, and at its start
those of every organisation erased while it was stopped. Both index kinds (Qdrant Edge on disk, Qdrant)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import numpy as np
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import tenants
from switchyard.gateway.cache.backends import EdgeIndex, QdrantIndex, VectorIndex
from switchyard.gateway.cache.erasures import ForgetErased

pytestmark = pytest.mark.integration


def _index(kind: str, tmp_path: Path) -> VectorIndex:
    if kind == "edge":
        return EdgeIndex(tmp_path / "semantic")
    from qdrant_client import QdrantClient

    return QdrantIndex(QdrantClient(":memory:"))


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def _found(index: VectorIndex, tenant_id: str) -> bool:
    hit = index.search(_vector(1), tenant_id=tenant_id, scope="s", threshold=0.99, now=time.time())
    return hit is not None


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
async def test_every_replica_forgets_an_erased_organisations_vectors(
    nats_server: NatsServer, tmp_path: Path, kind: str
) -> None:
    index = _index(kind, tmp_path)
    for n, tenant in enumerate(("before", "gone", "kept")):
        index.add(
            _vector(1),
            point_id=f"00000000-0000-0000-0000-00000000000{n}",
            tenant_id=tenant,
            scope="s",
            key=f"k-{tenant}",
            expires_at=time.time() + 3600,
        )
    nc = await nats.connect(nats_server.url)
    follower: ForgetErased | None = None
    try:
        bucket = await tenants.registry_bucket(nc.jetstream())
        for tenant in ("gone", "kept"):
            await tenants.register(bucket, tenant)
        await tenants.erase(bucket, "before")  # erased while this replica was stopped
        follower = ForgetErased(bucket, index)
        await follower.start()
        assert not _found(index, "before")
        assert _found(index, "gone") and _found(index, "kept")

        await tenants.erase(bucket, "gone")  # erased on another replica
        async with asyncio.timeout(5):
            while _found(index, "gone"):
                await asyncio.sleep(0.02)
        assert _found(index, "kept")
    finally:
        if follower is not None:
            await follower.stop()
        await nc.close()
        index.close()
