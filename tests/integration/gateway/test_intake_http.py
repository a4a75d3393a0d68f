"""The replica's room for request bodies (SWITCHYARD_MAX_BODY_BYTES_READING) bounds every route that reads
a whole body before its work, not the completion routes only: embeddings (OpenAI's and Gemini's), the task
API, the token counts of the three faces and batch creation. Before, while the room was full, those read
and parsed their bodies anyway (a replica's memory under many large embedding or task bodies at once was
unbounded). On a real gateway process: one client declares a body that fills the room and sends it
slowly; each route's request meanwhile waits, then is refused with 503 `gateway_busy` in its face's shape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.gateway.harness import Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

ROOM = 65536  # SWITCHYARD_MAX_BODY_BYTES and SWITCHYARD_MAX_BODY_BYTES_READING: one body fills it
ROUTES = {
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "a"},
    "/v1/tasks": {"model": "auto", "messages": [{"role": "user", "content": "a"}]},
    "/v1/messages/count_tokens": {"model": "auto", "messages": [{"role": "user", "content": "a"}]},
    "/v1/responses/input_tokens": {"model": "auto", "input": "a"},
    "/v1beta/models/gemini-x:countTokens": {"contents": [{"parts": [{"text": "a"}]}]},
    "/v1beta/models/gemini-x:embedContent": {"content": {"parts": [{"text": "a"}]}},
    "/v1/batches": {
        "input_file_id": "file-x",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Org]]:
    tmp = tmp_path_factory.mktemp("intake")
    env = {"SWITCHYARD_MAX_BODY_BYTES": str(ROOM), "SWITCHYARD_MAX_BODY_BYTES_READING": str(ROOM)}
    with gateway_stack(tmp, env=env) as (_, db_url, (base,)):
        yield base, asyncio.run(make_org(db_url, "acme"))


async def _filling_the_room(base: str, key: str) -> asyncio.StreamWriter:
    """A chat request that declares a body as large as the room and sends none of it yet."""
    host, port = base.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {ROOM}\r\n\r\n".encode()
    )
    await writer.drain()
    return writer


async def test_every_route_that_reads_a_body_waits_for_the_room_then_is_busy(stack: tuple[str, Org]) -> None:
    base, org = stack
    headers = auth(org.keys["admin"])
    holder = await _filling_the_room(base, org.keys["admin"])
    try:
        await asyncio.sleep(1.0)  # authenticated, and holding the room
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            answers = await asyncio.gather(*(client.post(path, json=body) for path, body in ROUTES.items()))
    finally:
        holder.close()
    refused = {path: (r.status_code, r.text) for path, r in zip(ROUTES, answers, strict=True)}
    for path, (status, text) in refused.items():
        assert status == 503 and "gateway_busy" in text, (path, status, text)
    anthropic = answers[list(ROUTES).index("/v1/messages/count_tokens")].json()
    assert anthropic["error"]["type"] == "overloaded_error"  # the Anthropic face's words for a 503
    assert all(r.headers["retry-after"] == "1" for r in answers)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        counted = await client.post("/v1/messages/count_tokens", json=ROUTES["/v1/messages/count_tokens"])
    assert "gateway_busy" not in counted.text  # the room came back with the holder gone
