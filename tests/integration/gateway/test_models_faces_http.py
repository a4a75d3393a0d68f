"""GET /v1/models and /v1/models/{id} as each SDK reads them, against a real gateway process on a real
nats-server and SQLite: the Anthropic SDK (its `anthropic-version` header) gets Anthropic's Models API,
paged by its cursors, with Anthropic's errors; the OpenAI SDK, on the same paths, OpenAI's shape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import anthropic
import httpx
import openai
import pytest

from tests.integration.gateway.harness import Bases, Org, auth, make_org, priced_stack
from tests.integration.gateway.test_key_policies_http import OTHER, POLICY, SMOL  # two models, alias `cheap`

pytestmark = pytest.mark.integration

EVERY = ["auto", SMOL, OTHER, "cheap"]  # the catalogue's order: auto, the models, the aliases
EMBEDDER = "local/embedder"  # and an embedding model, with an alias: on the OpenAI face only
World = tuple[str, Org, str]  # the gateway, an organisation, a key of it allowed `cheap` only


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("models-faces")
    policy = tmp / "models-policy.yaml"
    embedder = f"""  - id: {EMBEDDER}
    provider: local
    upstream: all-MiniLM-L6-v2
    tier: local
    input_per_1k: 0.0
    output_per_1k: 0.0
    context_window: 256
    embedding: {{dimensions: 384}}
aliases:
  vectors: {EMBEDDER}
"""
    policy.write_text(POLICY.replace("aliases:\n", embedder, 1))
    with priced_stack(tmp, count=1, env={"SWITCHYARD_POLICY_PATH": str(policy)}) as (_, db_url, bases):
        yield _world(bases, db_url)


def _world(bases: Bases, db_url: str) -> World:
    org = asyncio.run(make_org(db_url, "modelled"))
    made = httpx.post(
        f"{bases[0]}/v1/admin/keys",
        json={"name": "narrow", "models": ["cheap"]},
        headers=auth(org.keys["admin"]),
    )
    assert made.status_code == 201, made.text
    return bases[0], org, made.json()["key"]


def _client(base: str, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0)


def _error(err: anthropic.APIStatusError, kind: str) -> dict[str, object]:
    """Anthropic's error shape, of `kind`, with the request id where its SDK reads it; its `error`."""
    body = err.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == kind, body
    assert err.request_id == body["request_id"] == err.response.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]


async def test_the_anthropic_sdk_lists_and_pages_the_models(world: World) -> None:
    base, org, _ = world
    client = _client(base, org.keys["admin"])
    first = await client.models.list(limit=2)
    assert [m.id for m in first.data] == EVERY[:2]
    assert (first.has_more, first.first_id, first.last_id) == (True, "auto", SMOL)
    assert [m.id async for m in await client.models.list(limit=2)] == EVERY  # the SDK pages by after_id
    assert [m.id async for m in await client.models.list(limit=3, before_id="cheap")] == [
        "auto",
        SMOL,
        OTHER,
    ]
    back = await client.models.list(limit=2, before_id="cheap")  # the SDK pages back by before_id
    assert ([m.id for m in back.data], back.has_more) == ([SMOL, OTHER], True)
    assert [m.id async for m in back] == [SMOL, OTHER, "auto"]

    models = {m.id: m for m in (await client.models.list()).data}
    assert list(models) == EVERY
    assert {m.type for m in models.values()} == {"model"}
    assert {m.created_at for m in models.values()} == {datetime(1970, 1, 1, tzinfo=UTC)}  # release unknown
    assert {m.id: m.display_name for m in models.values()} == {
        "auto": "auto (Switchyard picks the model for each request)",
        SMOL: SMOL,
        OTHER: OTHER,
        "cheap": f"cheap (alias of {SMOL})",
    }
    assert {m.max_input_tokens for m in models.values()} == {None, 8192}  # `auto` has no one window

    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.models.list(after_id="local/nope")
    assert _error(bad.value, "invalid_request_error")["param"] == "after_id"
    with pytest.raises(anthropic.BadRequestError) as too_many:
        await client.models.list(limit=1001)
    assert _error(too_many.value, "invalid_request_error")["param"] == "limit"


async def test_the_anthropic_sdk_retrieves_a_model_or_gets_anthropics_404(world: World) -> None:
    base, org, _ = world
    client = _client(base, org.keys["admin"])
    model = await client.models.retrieve(OTHER)
    assert (model.type, model.id, model.display_name, model.max_input_tokens) == ("model", OTHER, OTHER, 8192)
    assert model.created_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert (await client.models.retrieve("cheap")).id == SMOL  # an alias answers as its model, as Anthropic's
    assert (await client.models.retrieve("auto")).id == "auto"

    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.models.retrieve("local/gpt-9")
    error = _error(missing.value, "not_found_error")
    assert error["code"] == "model_not_found" and "'local/gpt-9' does not exist" in str(error["message"])
    for embedder in (EMBEDDER, "vectors"):  # the Messages API has no embeddings (was listed and retrieved)
        with pytest.raises(anthropic.NotFoundError) as embeds:
            await client.models.retrieve(embedder)
        assert "is an embedding model" in str(_error(embeds.value, "not_found_error")["message"])
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        await _client(base, "sy_nope").models.list()
    _error(unknown.value, "authentication_error")


async def test_a_keys_allow_list_bounds_what_the_anthropic_sdk_sees(world: World) -> None:
    base, _, narrow = world
    client = _client(base, narrow)
    assert [m.id async for m in await client.models.list(limit=1)] == [SMOL, "cheap"]
    assert (await client.models.retrieve("cheap")).id == SMOL
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        await client.models.retrieve(OTHER)
    assert _error(refused.value, "permission_error")["code"] == "model_not_allowed"
    with pytest.raises(anthropic.BadRequestError) as hidden:  # a model it may not use is no cursor
        await client.models.list(after_id=OTHER)
    assert _error(hidden.value, "invalid_request_error")["param"] == "after_id"


async def test_the_openai_sdk_still_gets_openais_shape(world: World) -> None:
    base, org, narrow = world
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys["admin"], max_retries=0)
    models = [m async for m in client.models.list()]
    assert [(m.id, m.object, m.owned_by) for m in models] == [
        ("auto", "model", "switchyard"),
        (SMOL, "model", "local"),
        (OTHER, "model", "local"),
        (EMBEDDER, "model", "local"),
        ("vectors", "model", "local"),
        ("cheap", "model", "local"),
    ]
    cheap = await client.models.retrieve("cheap")
    assert (cheap.id, cheap.object, cheap.created, cheap.owned_by) == ("cheap", "model", 0, "local")
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("local/gpt-9")
    assert missing.value.code == "model_not_found" and missing.value.type == "invalid_request_error"

    async with httpx.AsyncClient() as c:  # the wire: OpenAI's list, the paging parameters ignored
        listed = await c.get(f"{base}/v1/models?limit=1&after_id=nope", headers=auth(narrow))
    assert listed.json() == {
        "object": "list",
        "data": [
            {"id": SMOL, "object": "model", "created": 0, "owned_by": "local"},
            {"id": "cheap", "object": "model", "created": 0, "owned_by": "local"},
        ],
    }
    assert "request-id" not in listed.headers  # Anthropic's header only on the Anthropic face
