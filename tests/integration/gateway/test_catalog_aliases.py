"""Model aliases at the gateway, on a real nats-server (the providers the executors announced): a name in
the policy's `aliases` is checked and served as the model it stands for, listed by /v1/models with its
target's owner, and a 404 for it names both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus
from switchyard.common.policy import Policy, load_policy
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.gateway.catalog import Catalog
from switchyard.gateway.errors import InvalidRequest, ModelNotFound

pytestmark = pytest.mark.integration
ALIASES = {
    "gpt-4o-mini": "local/smollm2-135m-instruct",
    "smart": "auto",
    "big": "openai/gpt-6-sol",  # its provider is not announced here
    "text-embedding-ada-002": "local/all-minilm-l6-v2",
}
POLICY = Policy.model_validate({**load_policy().model_dump(), "aliases": ALIASES})


@pytest.fixture
async def catalog(nats_server: NatsServer) -> AsyncIterator[Catalog]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await announce(await providers_bucket(js), ProviderStatus(provider="local"))
    yield Catalog(POLICY, js, refresh_s=0.1)
    await nc.close()


async def test_an_alias_is_checked_and_served_as_its_target(catalog: Catalog) -> None:
    assert await catalog.check("gpt-4o-mini") == "local/smollm2-135m-instruct"
    assert await catalog.check("smart") == "auto"
    assert await catalog.check("local/smollm2-135m-instruct") == "local/smollm2-135m-instruct"
    embedder = await catalog.check_embedding("text-embedding-ada-002", inputs=2, dimensions=None)
    assert embedder == "local/all-minilm-l6-v2"
    with pytest.raises(InvalidRequest) as chat_face:  # an embedding model's alias on a chat face
        await catalog.check("text-embedding-ada-002")
    assert "'text-embedding-ada-002' is an embedding model" in chat_face.value.message
    with pytest.raises(ModelNotFound) as gone:
        await catalog.check("big")
    assert "'big' (an alias of 'openai/gpt-6-sol')" in gone.value.message
    with pytest.raises(ModelNotFound):
        await catalog.check("gpt-4o")  # not an alias, not a model


async def test_the_model_list_names_the_aliases_of_what_is_served(catalog: Catalog) -> None:
    cards = {card.id: card.owned_by for card in await catalog.cards()}
    assert cards["gpt-4o-mini"] == "local" and cards["smart"] == "switchyard"
    assert cards["text-embedding-ada-002"] == "local"
    assert "big" not in cards  # its target's provider is not available
    card = await catalog.card("gpt-4o-mini")
    assert (card.id, card.owned_by) == ("gpt-4o-mini", "local")
