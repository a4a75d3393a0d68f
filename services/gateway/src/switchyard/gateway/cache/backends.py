"""Vector indexes for the semantic cache, behind one small protocol.

- `QdrantIndex`: qdrant-client against a Qdrant server (`SWITCHYARD_QDRANT_URL`), shared by every gateway
  replica; tests run the same code on qdrant-client's local mode (`QdrantClient(":memory:")`).
- `EdgeIndex`: the embedded default, `qdrant-edge-py` (Qdrant's engine in-process, one shard on disk per
  replica under the var directory).

Every search is filtered on the tenant and the request's scope and skips expired points, so one tenant
never finds another's vectors. Both are synchronous: the service calls them from a worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

PRUNE_EVERY_S = 60.0
# Qdrant Edge searches new points by brute force until its optimiser indexes them (HNSW): at 10,000
# points a search takes ~3 ms of CPU before, ~0.7 ms after. It runs in a background thread.
OPTIMIZE_EVERY = 500
INDEXING_THRESHOLD_KB = 1000


@dataclass(frozen=True, slots=True)
class Neighbour:
    key: str
    similarity: float


class VectorIndex(Protocol):
    def search(
        self, vector: np.ndarray, *, tenant_id: str, scope: str, threshold: float, now: float
    ) -> Neighbour | None: ...

    def add(
        self, vector: np.ndarray, *, point_id: str, tenant_id: str, scope: str, key: str, expires_at: float
    ) -> None: ...

    def forget_tenant(self, tenant_id: str) -> None:
        """Deletes every point of the tenant (an erasure)."""

    def close(self) -> None: ...


class QdrantIndex:
    """A collection on a Qdrant server (or qdrant-client's local mode), cosine distance."""

    def __init__(self, client: Any, *, collection: str = "switchyard_cache", dim: int = 384) -> None:
        from qdrant_client import models

        self._m = models
        self._client = client
        self._collection = collection
        if not client.collection_exists(collection):
            client.create_collection(
                collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
            for field, schema in (
                ("tenant", models.PayloadSchemaType.KEYWORD),
                ("scope", models.PayloadSchemaType.KEYWORD),
                ("expires_at", models.PayloadSchemaType.FLOAT),
            ):
                client.create_payload_index(collection, field, field_schema=schema)
        self._pruned = 0.0

    def _filter(self, *, tenant_id: str, scope: str, now: float) -> Any:
        m = self._m
        return m.Filter(
            must=[
                m.FieldCondition(key="tenant", match=m.MatchValue(value=tenant_id)),
                m.FieldCondition(key="scope", match=m.MatchValue(value=scope)),
                m.FieldCondition(key="expires_at", range=m.Range(gt=now)),
            ]
        )

    def search(
        self, vector: np.ndarray, *, tenant_id: str, scope: str, threshold: float, now: float
    ) -> Neighbour | None:
        found = self._client.query_points(
            self._collection,
            query=vector.tolist(),
            query_filter=self._filter(tenant_id=tenant_id, scope=scope, now=now),
            limit=1,
            with_payload=True,
            score_threshold=threshold,
        ).points
        if not found or (found[0].payload or {}).get("tenant") != tenant_id:
            return None
        return Neighbour(str(found[0].payload["key"]), float(found[0].score))

    def add(
        self, vector: np.ndarray, *, point_id: str, tenant_id: str, scope: str, key: str, expires_at: float
    ) -> None:
        payload = {"tenant": tenant_id, "scope": scope, "key": key, "expires_at": expires_at}
        self._client.upsert(
            self._collection, [self._m.PointStruct(id=point_id, vector=vector.tolist(), payload=payload)]
        )
        now = time.time()
        if now - self._pruned > PRUNE_EVERY_S:
            self._pruned = now
            m = self._m
            expired = m.Filter(must=[m.FieldCondition(key="expires_at", range=m.Range(lte=now))])
            self._client.delete(self._collection, points_selector=m.FilterSelector(filter=expired))

    def forget_tenant(self, tenant_id: str) -> None:
        m = self._m
        theirs = m.Filter(must=[m.FieldCondition(key="tenant", match=m.MatchValue(value=tenant_id))])
        self._client.delete(self._collection, points_selector=m.FilterSelector(filter=theirs))

    def close(self) -> None:
        self._client.close()


class EdgeIndex:
    """An embedded Qdrant Edge shard in `path` (created on first use, reloaded after a restart)."""

    def __init__(self, path: Path, *, dim: int = 384) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self._lock = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            # index segments from ~650 vectors (1 MB) rather than Qdrant's 10 MB default (~6,500)
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
        )
        if any(path.iterdir()):
            self._shard = qe.EdgeShard.load(str(path), config)
        else:
            self._shard = qe.EdgeShard.create(str(path), config)
            for field, schema in (
                ("tenant", qe.PayloadSchemaType.Keyword),
                ("scope", qe.PayloadSchemaType.Keyword),
                ("expires_at", qe.PayloadSchemaType.Float),
            ):
                self._shard.update(qe.UpdateOperation.create_field_index(field, schema))
        self._pruned = 0.0
        self._closed = False
        self._unindexed = 0
        self._optimizer: threading.Thread | None = None

    def search(
        self, vector: np.ndarray, *, tenant_id: str, scope: str, threshold: float, now: float
    ) -> Neighbour | None:
        qe = self._qe
        where = qe.Filter(
            must=[
                qe.FieldCondition(key="tenant", match=qe.MatchValue(tenant_id)),
                qe.FieldCondition(key="scope", match=qe.MatchValue(scope)),
                qe.FieldCondition(key="expires_at", range=qe.RangeFloat(gt=now)),
            ]
        )
        request = qe.QueryRequest(
            limit=1,
            query=qe.Query.Nearest(vector.tolist()),
            filter=where,
            with_payload=True,
            score_threshold=threshold,
        )
        with self._lock:
            found = self._shard.query(request)
        if not found or (found[0].payload or {}).get("tenant") != tenant_id:
            return None
        return Neighbour(str(found[0].payload["key"]), float(found[0].score))  # type: ignore[index]

    def add(
        self, vector: np.ndarray, *, point_id: str, tenant_id: str, scope: str, key: str, expires_at: float
    ) -> None:
        qe = self._qe
        payload = {"tenant": tenant_id, "scope": scope, "key": key, "expires_at": expires_at}
        point = qe.Point(point_id, vector.tolist(), payload)
        now = time.time()
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points([point]))
            if now - self._pruned > PRUNE_EVERY_S:
                self._pruned = now
                expired = qe.Filter(must=[qe.FieldCondition(key="expires_at", range=qe.RangeFloat(lte=now))])
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(expired))
            self._unindexed += 1
            if self._unindexed >= OPTIMIZE_EVERY and (
                self._optimizer is None or not self._optimizer.is_alive()
            ):
                self._unindexed = 0
                self._optimizer = threading.Thread(
                    target=self.optimize, name="qdrant-edge-optimize", daemon=True
                )
                self._optimizer.start()

    def optimize(self) -> None:
        """Indexes what was added since the last run (Qdrant's optimiser; searches go on meanwhile)."""
        if not self._closed:
            self._shard.optimize()

    def forget_tenant(self, tenant_id: str) -> None:
        qe = self._qe
        theirs = qe.Filter(must=[qe.FieldCondition(key="tenant", match=qe.MatchValue(tenant_id))])
        with self._lock:
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(theirs))

    def info(self) -> str:
        info = self._shard.info()
        indexed = info.indexed_vectors_count
        return f"{info.points_count} points, {indexed} indexed ({info.segments_count} segments)"

    def wait_optimized(self) -> None:
        if self._optimizer is not None:
            self._optimizer.join()

    def close(self) -> None:
        self.wait_optimized()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._shard.flush()
            self._shard.close()
