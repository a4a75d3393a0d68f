"""PostgreSQL restarted under a running gateway (an operator's restart, a managed database's failover).
While it is down, a request that needs it is a 503 `database_unavailable` with `Retry-After`, which the
OpenAI and Anthropic SDKs retry by themselves, and never a 500 "internal error" (before: 500, and an
"unhandled error" traceback in the log for every such request). Once it is back, the same replica answers
again, with no restart of the gateway."""

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


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: it is stopped and started again under the gateway."""
    with started_cluster() as cluster:
        yield cluster


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "database_unavailable", error
    assert error["type"] == "service_unavailable", error
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-should-retry"] == "true"


def test_a_restarted_database_is_a_503_then_answers_again(
    own_cluster: PostgresCluster, nats_server: NatsServer, tmp_path: Path
) -> None:
    url = own_cluster.url()
    asyncio.run(prepare_bus(nats_server.url, url))
    org = asyncio.run(make_org(url, "acme", roles=("admin", "member")))
    with gateways(nats_server, url, tmp_path) as bases, httpx.Client(base_url=bases[0], timeout=30) as http:
        admin = auth(org.keys["admin"])
        assert http.get("/v1/admin/users", headers=admin).status_code == 200
        own_cluster.stop(mode="fast")
        _unavailable(http.get("/v1/admin/users", headers=admin))  # its key is known: the listing needs the DB
        _unavailable(http.post("/v1/chat/completions", headers=auth(org.keys["member"]), json=CHAT))  # a key
        own_cluster.start_server()
        deadline = time.monotonic() + 10
        while (answer := http.get("/v1/admin/users", headers=admin)).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert {u["email"] for u in answer.json()} >= {"admin@acme.test", "member@acme.test"}
        log = (tmp_path / "gateway-0.log").read_text()
        assert "unhandled error" not in log, log[-3000:]
