"""Building the response cache from the gateway's settings (called by `create_app` once connected)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from nats.js import JetStreamContext

from switchyard.common import tenants
from switchyard.common.bus import EventPublisher
from switchyard.gateway.cache.backends import EdgeIndex, QdrantIndex, VectorIndex
from switchyard.gateway.cache.erasures import ForgetErased
from switchyard.gateway.cache.exact import ExactStore, cache_bucket
from switchyard.gateway.cache.models import CacheConfig
from switchyard.gateway.cache.service import Configs, Embeds, ResponseCache
from switchyard.gateway.config import GatewaySettings

log = logging.getLogger(__name__)


def configs_of(settings: GatewaySettings) -> Configs:
    default = CacheConfig(
        enabled=settings.cache_enabled,
        semantic=settings.cache_semantic,
        ttl_s=min(settings.cache_ttl_s, settings.cache_max_ttl_s),
        threshold=settings.cache_semantic_threshold,
        semantic_multi_turn=settings.cache_semantic_multi_turn,
        semantic_tools=settings.cache_semantic_tools,
    )
    return Configs(default, plans=settings.cache_plans, tenants=settings.cache_tenants)


def load_embedder(settings: GatewaySettings) -> Embeds:
    from switchyard.common.embedding import model_files
    from switchyard.common.embedding.embedder import Embedder

    root = settings.models_dir
    files = model_files.ensure_built(root)[0] if settings.cache_build_models else model_files.find(root)
    return Embedder(files.int8, files.tokenizer, threads=1)


def vector_index(settings: GatewaySettings) -> VectorIndex:
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(url=settings.qdrant_url, api_key=key, timeout=5)
        return QdrantIndex(client, collection=settings.qdrant_collection)
    folder = settings.resolved_var_dir() / "cache" / f"semantic-{settings.instance or 'gateway'}"
    return EdgeIndex(Path(folder))


async def create_cache(
    settings: GatewaySettings, js: JetStreamContext, events: EventPublisher
) -> ResponseCache | None:
    configs = configs_of(settings)
    rules = [*configs.plans.values(), *configs.tenants.values()]
    if not configs.default.enabled and not any(r.enabled for r in rules):
        return None
    store = ExactStore(await cache_bucket(js, max_ttl_s=settings.cache_max_ttl_s))
    if not configs.any_semantic():
        return ResponseCache(store=store, configs=configs, events=events)
    embedder = await asyncio.to_thread(load_embedder, settings)
    index = await asyncio.to_thread(vector_index, settings)
    log.info("response cache on: exact (KV) and semantic (%s)", type(index).__name__)
    cache = ResponseCache(store=store, configs=configs, events=events, index=index, embedder=embedder)
    # an organisation erased on any replica (or while this one was stopped) leaves this one's index too
    cache.erasures = ForgetErased(await tenants.registry_bucket(js), index)
    await cache.erasures.start()
    return cache
