"""The response cache: look a request up (exact, then semantic), answer a hit as a completed task that is
recorded on the bus (ledger, zero-cost billing), and keep fresh answers for the next request. An embedding
task is looked up exact only (a near text must never get another text's vectors), and kept only when its
vectors came inline.

A cache failure never fails a request: a lookup that cannot reach its store is a miss, a store that fails
is logged. A hit is published as `switchyard.task.completed.v1` with `cache` set, on the task's result
subject, so the audit ledger appends it and billing records it at zero provider cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from switchyard.common import subjects, vectors
from switchyard.common.bus import EventPublisher
from switchyard.common.events import CacheHit, EmbeddingResult, TaskCompleted, TaskSubmitted
from switchyard.gateway import metrics
from switchyard.gateway.cache.backends import VectorIndex
from switchyard.gateway.cache.erasures import ForgetErased
from switchyard.gateway.cache.exact import ExactStore
from switchyard.gateway.cache.guard import framed, prompt_words, reordered
from switchyard.gateway.cache.models import (
    CacheConfig,
    CachedAnswer,
    CacheRule,
    Directive,
    Hit,
    embedding_key,
    exact_key,
    point_id,
    semantic_scope,
    semantic_text,
    storable,
    storable_embedding,
)

log = logging.getLogger(__name__)


class Embeds(Protocol):
    """What the semantic cache needs of the embedder (switchyard.common.embedding.embedder.Embedder)."""

    def embed(self, texts: list[str]) -> Any: ...


@dataclass
class Lookup:
    """One request's pass through the cache: its keys, what was found, and what may be stored after."""

    tenant_id: str
    config: CacheConfig
    directive: Directive
    key: str
    embedding: bool = False  # an embedding request (its own keys, exact only)
    text: str | None = None  # what the semantic cache embeds; None: exact only
    scope: str | None = None
    vector: np.ndarray | None = None
    hit: Hit | None = None
    took_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Configs:
    """Defaults from the settings, overridden by the tenant's plan, then by the tenant itself."""

    default: CacheConfig
    plans: Mapping[str, CacheRule] = field(default_factory=dict)
    tenants: Mapping[str, CacheRule] = field(default_factory=dict)

    def for_tenant(self, tenant_id: str, plan: str | None) -> CacheConfig:
        return self.default.apply(self.plans.get(plan or "")).apply(self.tenants.get(tenant_id))

    def any_semantic(self) -> bool:
        rules = [*self.plans.values(), *self.tenants.values()]
        return self.default.semantic or any(r.semantic for r in rules)


class ResponseCache:
    def __init__(
        self,
        *,
        store: ExactStore,
        configs: Configs,
        events: EventPublisher | None = None,
        index: VectorIndex | None = None,
        embedder: Embeds | None = None,
    ) -> None:
        self.store = store
        self.configs = configs
        self.events = events
        self.index = index
        self.embedder = embedder if index is not None else None
        self._background: set[asyncio.Task[Any]] = set()
        self.erasures: ForgetErased | None = None  # the index's erased organisations (cache/erasures.py)

    async def lookup(
        self, *, tenant_id: str, plan: str | None, task: TaskSubmitted, directive: Directive
    ) -> Lookup | None:
        """None when the cache is off for this tenant, the request opted out entirely (`no-store`), asks
        for several answers or for token log probabilities."""
        config = self.configs.for_tenant(tenant_id, plan)
        embedding = task.embedding()
        # Several answers (`n`) are samples the client wants fresh, and a stored answer has no token log
        # probabilities (nor would they be its own sample's): neither is read from nor kept in the cache.
        fresh = embedding is None and (task.chat().n > 1 or task.chat().logprobs)
        if not config.enabled or not directive.write or fresh:
            if config.enabled:
                metrics.CACHE.labels("any", "bypass").inc()
            return None
        started = time.perf_counter()
        if embedding is not None:
            key = embedding_key(tenant_id, embedding)
            found = Lookup(tenant_id, config, directive, key, embedding=True)
        else:
            request = task.chat()
            found = Lookup(tenant_id, config, directive, exact_key(tenant_id, request))
            if self.embedder is not None:
                found.text = semantic_text(request, config)
                if found.text is not None:
                    found.scope = semantic_scope(tenant_id, request)
        if directive.read:
            try:
                found.hit = await self._find(found)
            except Exception as exc:  # the cache is an optimisation: a broken store is a miss
                log.warning("cache lookup failed, serving without it: %s", exc)
            allowed = task.allowed_models
            if found.hit is not None and allowed is not None and found.hit.answer.model not in allowed:
                # another key's `auto` answer from a model this key may not use (an alias listed for its
                # model is a miss too, a harmless one: this key's own answer replaces it)
                found.hit = None
        found.took_ms = (time.perf_counter() - started) * 1000
        if found.hit is not None:
            metrics.CACHE.labels(found.hit.kind, "hit").inc()
            found.headers = {"x-switchyard-cache": "hit", "x-switchyard-cache-kind": found.hit.kind}
            if found.hit.similarity is not None:
                found.headers["x-switchyard-cache-similarity"] = f"{found.hit.similarity:.4f}"
        else:
            metrics.CACHE.labels("any", "miss" if directive.read else "bypass").inc()
            found.headers = {"x-switchyard-cache": "miss" if directive.read else "bypass"}
        return found

    async def _find(self, found: Lookup) -> Hit | None:
        now = time.time()
        ttl_s = found.config.ttl_s  # the reader's: an answer another plan kept longer is not fresh to it
        answer = await self.store.get(
            found.tenant_id, found.key, embedding=found.embedding, now=now, ttl_s=ttl_s
        )
        if answer is not None and found.embedding and not _intact(answer.embedding):
            # Checked before the hit is published: a corrupt entry is a miss (the fresh answer replaces
            # it), not a completed task in the ledger followed by a 502.
            log.warning("cache entry %s has corrupt vectors: served as a miss", answer.key)
            metrics.CACHE.labels("exact", "corrupt").inc()
            return None
        if answer is not None:
            return Hit("exact", answer)
        if found.text is None or found.scope is None:
            return None
        neighbour = await asyncio.to_thread(self._nearest, found, now)
        if neighbour is None:
            return None
        key, similarity = neighbour
        answer = await self.store.get(found.tenant_id, key, now=now, ttl_s=ttl_s)
        if answer is None or answer.words is None:
            return None
        words = prompt_words(found.text)
        if reordered(words, answer.words) or framed(words, answer.words):
            return None  # the same words in another order, or another fill of a long frame: another question
        return Hit("semantic", answer, similarity)

    def _nearest(self, found: Lookup, now: float) -> tuple[str, float] | None:
        assert self.embedder is not None and self.index is not None and found.text and found.scope
        found.vector = self.embedder.embed([found.text]).vectors[0]
        neighbour = self.index.search(
            found.vector,
            tenant_id=found.tenant_id,
            scope=found.scope,
            threshold=found.config.threshold,
            now=now,
        )
        return None if neighbour is None else (neighbour.key, neighbour.similarity)

    async def answer(self, task: TaskSubmitted, found: Lookup) -> TaskCompleted:
        """The hit as this task's result, published on the bus (ledger, zero-cost billing)."""
        assert found.hit is not None
        hit, cached = found.hit, found.hit.answer
        done = TaskCompleted(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            user_id=task.user_id,
            api_key_id=task.api_key_id,
            model=cached.model,
            provider=cached.provider,
            tier=cached.tier,
            content=cached.content,
            finish_reason=cached.finish_reason,
            usage=cached.usage,
            embedding=cached.embedding,
            attempts=0,
            latency_ms=round(found.took_ms, 3),
            completed_at=datetime.now(UTC),
            cache=CacheHit(
                kind=hit.kind,
                source_task_id=cached.source_task_id,
                similarity=None if hit.similarity is None else round(hit.similarity, 6),
            ),
        )
        if self.events is not None:
            await self.events.publish(
                done,
                subject=subjects.result_subject(task.tenant_id, task.task_id),
                tenant_id=task.tenant_id,
                event_subject=task.task_id,
            )
        self._later(self.store.count_hit(found.tenant_id, cached.key, embedding=found.embedding))
        return done

    async def keep(self, found: Lookup, done: TaskCompleted) -> bool:
        """Stores a fresh answer (a miss, or a `no-cache` request); an embedding's once its vectors were read
        and checked. Never raises."""
        if found.hit is not None or done.cache is not None or not found.directive.write:
            return False
        if found.embedding:
            if not storable_embedding(done.embedding):
                return False
        elif not storable(
            content=done.content,
            finish_reason=done.finish_reason,
            tool_calls=done.tool_calls,
            thinking=done.thinking,
            refusal=done.refusal,
        ):
            return False
        now = time.time()
        answer = CachedAnswer(
            tenant_id=found.tenant_id,
            key=found.key,
            source_task_id=done.task_id,
            model=done.model,
            provider=done.provider,
            tier=done.tier,
            content=done.content,
            finish_reason=done.finish_reason,
            usage=done.usage,
            created_at=now,
            expires_at=now + found.config.ttl_s,
            embedding=done.embedding if found.embedding else None,
            words=None if found.text is None or found.scope is None else prompt_words(found.text),
        )
        try:
            if not await self.store.put(answer):
                return False  # its organisation was erased meanwhile
            if found.text is not None and found.scope is not None:
                await asyncio.to_thread(self._add, found, answer)
                await self._fence_vector(found.tenant_id)
        except Exception as exc:
            log.warning("could not store the answer of task %s in the cache: %s", done.task_id, exc)
            return False
        metrics.CACHE.labels("any", "stored").inc()
        return True

    async def _fence_vector(self, tenant_id: str) -> None:
        """A vector added as its organisation is erased: this replica's `erasures` may have forgotten the
        organisation before the add, so the organisation's points go again (access/fence.py)."""
        fence = self.store.fence
        if fence is not None and self.index is not None and await fence.undone(tenant_id, "a cache vector"):
            await asyncio.to_thread(self.index.forget_tenant, tenant_id)

    def _add(self, found: Lookup, answer: CachedAnswer) -> None:
        assert self.embedder is not None and self.index is not None and found.text and found.scope
        if found.vector is None:
            found.vector = self.embedder.embed([found.text]).vectors[0]
        self.index.add(
            found.vector,
            point_id=point_id(found.tenant_id, found.key),
            tenant_id=found.tenant_id,
            scope=found.scope,
            key=found.key,
            expires_at=answer.expires_at,
        )

    def _later(self, work: Any) -> None:
        job = asyncio.ensure_future(work)
        self._background.add(job)
        job.add_done_callback(self._done)

    def _done(self, job: asyncio.Task[Any]) -> None:
        self._background.discard(job)
        if not job.cancelled() and job.exception() is not None:
            log.warning("cache hit count not updated: %s", job.exception())

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.erasures is not None:
            await self.erasures.stop()
        if self.index is not None:
            await asyncio.to_thread(self.index.close)


def _intact(result: EmbeddingResult | None) -> bool:
    """A stored embedding's vectors are there and match their digest."""
    if result is None:
        return False
    try:
        vectors.unpack(result)
    except ValueError:  # VectorsCorrupt, bad base64, or no inline data
        return False
    return True
