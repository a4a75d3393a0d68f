"""The Batch API's parts, built and started by `create_app` once the gateway's state exists."""

from __future__ import annotations

from nats.js import JetStreamContext

from switchyard.gateway.batches import vectors
from switchyard.gateway.batches.lease import Knobs
from switchyard.gateway.batches.runner import BatchRunner
from switchyard.gateway.batches.service import Batches
from switchyard.gateway.batches.store import BatchStore, batches_bucket
from switchyard.gateway.files.share import Share
from switchyard.gateway.state import Gateway


async def start_batches(gw: Gateway, js: JetStreamContext, *, replica: str) -> Batches:
    settings = gw.settings
    kept = await vectors.open_bucket(
        js, max_bytes=settings.batch_vectors_bytes, replicas=settings.stream_replicas
    )
    store = BatchStore(await batches_bucket(js), kept)
    knobs = Knobs(
        replica=replica,
        concurrency=settings.batch_concurrency,
        lease_s=settings.batch_lease_s,
        poll_s=settings.batch_poll_s,
        principal_ttl_s=settings.auth_cache_ttl_s,
    )
    runner = BatchRunner(
        gw, store, knobs, max_running=settings.batch_max_running, scan_s=settings.batch_scan_s
    )
    runner.start()
    batches = Batches(
        store,
        gw.files,
        runner,
        share=Share.of(settings),
        max_unfinished=settings.batch_org_unfinished,
        body_key=gw.body_key,
    )
    gw.files.in_use = batches.inputs_in_use  # a batch's input file does not expire while the batch runs
    return batches
