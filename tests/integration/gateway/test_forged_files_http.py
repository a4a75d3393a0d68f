"""A file whose object the bus holds forged, as the API client sees it (a gateway process, a real
nats-server, SQLite): `GET /v1/files/{id}/content` answers 500 `file_unreadable` in the API's error body,
never the forger's bytes, the file's metadata still reads, the refusal is counted in the gateway's
`/metrics` and logged with the bucket and name but not the content, and the organisation can delete it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.gateway.db import migrations
from switchyard.gateway.files.store import BUCKET, file_key
from tests.integration.gateway.harness import Org, auth, gateways, make_org
from tests.integration.gateway.test_forged_objects import forge_object

pytestmark = pytest.mark.integration
FORGED = b'{"custom_id": "m"}\n'  # as long as the file: its content-length holds
REFUSED = (
    'switchyard_bus_refused_messages_total{reason="forged_object_meta",subscription="$O.switchyard-files"}'
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, NatsServer, Org, Path]]:
    server = NatsServer(tmp_path / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    acme = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    try:
        with gateways(server, db_url, tmp_path) as (base,):
            yield base, server, acme, tmp_path / "gateway-0.log"
    finally:
        server.stop()


async def test_a_forged_file_is_file_unreadable_to_the_api_client(
    world: tuple[str, NatsServer, Org, Path],
) -> None:
    base, server, acme, log = world
    headers = auth(acme.keys["member"])
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        uploaded = await http.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("in.jsonl", b'{"custom_id": "a"}\n', "application/jsonl")},
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        assert (await http.get(f"/v1/files/{file_id}/content")).content == b'{"custom_id": "a"}\n'
        forger = await nats.connect(server.url)  # a bus without users: any client (the embedded run's
        try:  # least-privileged executor: test_forged_objects.py)
            await forger.jetstream().create_object_store("switchyard-embeddings")
            await forge_object(forger, file_key(acme.id, file_id), FORGED)
        finally:
            await forger.close()
        content = await http.get(f"/v1/files/{file_id}/content")
        assert content.status_code == 500, content.text
        error = content.json()["error"]
        assert error["code"] == "file_unreadable"
        assert "overwritten by another client of the bus" in error["message"]
        assert FORGED not in content.content
        assert (await http.get(f"/v1/files/{file_id}")).status_code == 200
        assert f"{REFUSED} 1.0" in (await http.get("/metrics")).text
        assert (await http.delete(f"/v1/files/{file_id}")).json()["deleted"] is True
    logged = log.read_text()
    assert f"of the object {file_key(acme.id, file_id)} in the object store {BUCKET}" in logged
    assert FORGED.decode().strip() not in logged
