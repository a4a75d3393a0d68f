"""PostgreSQL down longer than the key cache's TTL under a running gateway (found by the chaos run's
60 s outage: every submission of every tenant was 503 from the 30th second on). A key the replica has
verified before is still served while the database cannot be reached; a key it never saw needs the
database, and is a 503 `database_unavailable` as before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchyard.cli.processes import NatsServer, PostgresCluster
from tests.integration.gateway.harness import auth, gateways, make_org, prepare_bus
from tests.support.postgres import started_cluster

pytestmark = pytest.mark.integration

CHAT = {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
TTL_S = 1.0


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: it is stopped under the gateway."""
    with started_cluster() as cluster:
        yield cluster


def test_a_known_key_is_served_past_its_ttl_while_the_database_is_down(
    own_cluster: PostgresCluster, nats_server: NatsServer, tmp_path: Path
) -> None:
    url = own_cluster.url()
    asyncio.run(prepare_bus(nats_server.url, url))
    org = asyncio.run(make_org(url, "acme", roles=("admin", "member")))
    member = auth(org.keys["member"])
    env = {"SWITCHYARD_AUTH_CACHE_TTL_S": str(TTL_S)}
    with (
        gateways(nats_server, url, tmp_path, env=env) as bases,
        httpx.Client(base_url=bases[0], timeout=30) as http,
    ):
        assert http.post("/v1/tasks", headers=member, json=CHAT).status_code == 202
        own_cluster.stop(mode="immediate")
        time.sleep(TTL_S * 2)  # the key's cache entry is past its TTL
        for n in range(2):
            answer = http.post("/v1/tasks", headers={**member, "Idempotency-Key": f"k{n}"}, json=CHAT)
            assert answer.status_code == 202, answer.text  # was 503 database_unavailable
            assert answer.json()["status"] == "queued"
        never_seen = http.post("/v1/tasks", headers=auth(org.keys["admin"]), json=CHAT)
        assert never_seen.status_code == 503, never_seen.text
        assert never_seen.json()["error"]["code"] == "database_unavailable"
        log = (tmp_path / "gateway-0.log").read_text()
        assert log.count("serving the keys it verified before") == 1, log[-3000:]
