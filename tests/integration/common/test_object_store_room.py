"""A nats-server without room for an object store's reservation: the service that opens it cannot start,
and says which setting to lower, not the server's bare "insufficient storage resources"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import vectors
from switchyard.common.errors import ConfigurationError
from switchyard.gateway.batches.vectors import open_bucket as batch_vectors_bucket
from switchyard.gateway.files.store import files_bucket

GIB = 1024**3


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream", max_file_store=GIB).start()
    try:
        yield server
    finally:
        server.stop()


async def test_an_object_store_larger_than_the_room_left_names_its_setting(small_server: NatsServer) -> None:
    nc = await nats.connect(small_server.url)
    try:
        js = nc.jetstream()
        with pytest.raises(ConfigurationError) as raised:
            await files_bucket(js, max_bytes=2 * GIB, replicas=1)
        assert "SWITCHYARD_FILES_BUCKET_BYTES" in raised.value.message
        assert "OBJ_switchyard-files" not in {s.config.name for s in await js.streams_info()}
        # Each store names its own setting; one that fits is made, and takes the room the next one wanted.
        await vectors.open_store(js, ttl_s=60, max_bytes=GIB // 2, replicas=1)
        with pytest.raises(ConfigurationError, match="SWITCHYARD_BATCH_VECTORS_BYTES"):
            await batch_vectors_bucket(js, max_bytes=GIB // 2 + 1, replicas=1)
        with pytest.raises(ConfigurationError, match="SWITCHYARD_EMBEDDING_STORE_MAX_BYTES"):
            await vectors.open_store(js, ttl_s=60, max_bytes=2 * GIB, replicas=1)  # grown past the room
    finally:
        await nc.close()
