"""A rate limit on the Gemini face as Google's clients read one, over HTTP on a gateway process, a real
nats-server and SQLite: Google sends no Retry-After header but a `google.rpc.RetryInfo` detail whose
`retryDelay` the Gemini CLI and most hand-written Gemini clients wait by; Switchyard's 429 carried only
the header, so they retried at once or on their own schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from switchyard.cli.processes import NatsServer
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import Org, gateways, make_org

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Org]]:
    """A gateway that takes one token count per user and minute."""
    tmp = tmp_path_factory.mktemp("gemini-limits")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    try:
        with gateways(server, db_url, tmp, env={"SWITCHYARD_LIMIT_USER_COUNTS_PER_MIN": "1"}) as (base,):
            yield base, org
    finally:
        server.stop()


async def test_a_rate_limit_says_its_delay_in_a_retry_info_detail(limited: tuple[str, Org]) -> None:
    base, org = limited
    options = types.HttpOptions(base_url=base, api_version="v1beta", timeout=30_000)
    sdk = genai.Client(api_key=org.keys["member"], http_options=options).aio
    await sdk.models.count_tokens(model="auto", contents="hello there")
    with pytest.raises(genai_errors.ClientError) as caught:
        await sdk.models.count_tokens(model="auto", contents="hello there")
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert error.response is not None
    after = int(error.response.headers["retry-after"])
    assert 1 <= after <= 60
    info, retry = error.details["error"]["details"]
    assert info["reason"] == "RATE_LIMIT_EXCEEDED"  # Switchyard's ErrorInfo stays first
    assert retry == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{after}s"}
