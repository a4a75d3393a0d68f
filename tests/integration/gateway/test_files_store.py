"""The file store on a real nats-server: an expired file is gone for readers at once, and its bytes leave
the object store when it is next listed or when a sweep runs; a sweep spans every organisation."""

from __future__ import annotations

import time

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.gateway.errors import NotFound
from switchyard.gateway.files.store import STREAM, files_bucket

pytestmark = pytest.mark.integration


async def test_expired_files_are_unseen_then_deleted_by_a_list_or_a_sweep(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        files = await files_bucket(js, max_bytes=8 * 1024 * 1024)
        past = int(time.time()) - 1
        kept = await files.put(tenant_id="a", purpose="batch", filename="k.jsonl", data=b"{}\n")
        listed = await files.put(
            tenant_id="a", purpose="batch_output", filename="o.jsonl", data=b"x" * 1000, expires_at=past
        )
        swept = [
            await files.put(
                tenant_id=t, purpose="batch_output", filename="o.jsonl", data=b"y" * 1000, expires_at=past
            )
            for t in ("b", "c")
        ]
        with pytest.raises(NotFound):
            await files.get(tenant_id="a", file_id=listed.id)
        page, _ = await files.list(tenant_id="a", purpose=None, limit=10, after=None, order="desc")
        assert [f.id for f in page] == [kept.id]
        assert await files.sweep() == 2  # b's and c's; a's went with its list
        for tenant, file in zip(("b", "c"), swept, strict=True):
            with pytest.raises(NotFound):
                await files.content(tenant_id=tenant, file_id=file.id)
        assert await files.sweep() == 0
        assert (await files.content(tenant_id="a", file_id=kept.id)) == b"{}\n"
        state = (await js.stream_info(STREAM)).state
        assert (
            state.bytes < 3000
        )  # the three expired files' chunks are gone (their metas stay, marked deleted)
    finally:
        await nc.close()
