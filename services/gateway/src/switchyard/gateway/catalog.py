"""The model catalogue: what `model` values this deployment serves, from the policy and the providers
the executors announced. Chat models serve the chat faces, embedding models `/v1/embeddings`: a model
named on the other kind's endpoint is refused here, early (the router refuses it too)."""

from __future__ import annotations

from collections.abc import Collection

from nats.js import JetStreamContext

from switchyard.common import vectors
from switchyard.common.policy import EmbeddingSpec, Policy
from switchyard.common.policy_source import PolicySource, current_of
from switchyard.common.providers import AvailableProviders
from switchyard.gateway.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from switchyard.gateway.key_policy import allows, check_model
from switchyard.gateway.schemas import AnthropicModelInfo, ModelCard

AUTO = "auto"
SELF = "switchyard"  # owner of `auto`
# Providers whose upstream serves more than the policy lists: `<provider>/<any name>` is passed through.
PASS_THROUGH = ("openai", "anthropic", "gemini")
EMBEDDING_PASS_THROUGH = ("openai", "gemini")  # Anthropic serves no embeddings
LACKS = "model_lacks_capability"
MAX_NAMED = 40  # the known names an error lists (a policy may have hundreds)


class Catalog:
    def __init__(self, policy: Policy | PolicySource, js: JetStreamContext, *, refresh_s: float) -> None:
        self._policy = current_of(policy)
        self._announced = AvailableProviders(lambda: js, refresh_s=refresh_s)

    @property
    def policy(self) -> Policy:
        """The policy in force (a source's: re-read when its file changes, so new models and aliases are
        served without a restart). Each check reads it once: an edit landing between two reads must not
        make one answer of two policies (an alias of one, the model list of the other)."""
        return self._policy()

    async def providers(self) -> set[str]:
        return await self._announced.names()

    async def check(self, name: str, *, allowed: frozenset[str] | None = None) -> str:
        """The model `name` stands for (an alias's target, else `name`), once it is known to be served.
        Raises ModelNotFound unless it is `auto`, a configured model, or a pass-through name; 400 for an
        embedding model; first, 403 when it is outside the key's allow-list (`allowed`, `key_policy`)."""
        policy = self.policy
        check_model(allowed, name, policy.resolve)
        model = policy.resolve(name)
        spec = policy.model(model)
        if spec is not None and spec.embeds:
            raise InvalidRequest(
                f"'{name}' is an embedding model: send it to /v1/embeddings", code=LACKS, param="model"
            )
        await self._served(policy, model, name)
        return model

    def check_listable(self, names: Collection[str] | None) -> None:
        """400 `invalid_value` (param `models`) naming each of a key's allow-list `names` that no request
        could be served under: neither `auto`, a model or alias of the policy, nor `<provider>/<model>` of a
        pass-through provider. Whether a provider is announced now does not matter: a key outlives an
        outage, and a provider configured later serves the names listed for it."""
        policy = self.policy
        known = {AUTO, *(m.id for m in policy.models), *policy.aliases}
        unknown = _unlisted(policy, names)
        if unknown:
            listed = sorted(known)
            shown = ", ".join(listed[:MAX_NAMED]) + (
                f" and {len(listed) - MAX_NAMED} more" if len(listed) > MAX_NAMED else ""
            )
            raise InvalidRequest(
                f"unknown models {unknown}: a key may list {shown}, or <provider>/<model> of "
                f"{', '.join(f'{p}/' for p in PASS_THROUGH)} (GET /v1/models lists those served now)",
                code="invalid_value",
                param="models",
            )

    def check_rotatable(self, key_id: str, names: Collection[str] | None) -> None:
        """400 `invalid_value` (param `models`) when a key's allow-list names models the policy no longer
        has (a key made before the policy changed): its successor would carry them on. The names, and how
        to go on: its list changed first (`key.updated`, recorded), then rotated."""
        unknown = _unlisted(self.policy, names)
        if unknown:
            raise InvalidRequest(
                f"the key {key_id} lists models the policy no longer has: {unknown}; a rotation keeps the "
                f"key's policy, so change its list first (`switchyard keys update {key_id} --models ...`, "
                f"PATCH /v1/admin/keys/{key_id}), then rotate it. Nothing changed: the key still works "
                "(if it leaked: `switchyard keys revoke` ends it now)",
                code="invalid_value",
                param="models",
            )

    async def check_embedding(
        self, name: str, *, inputs: int, dimensions: int | None, allowed: frozenset[str] | None = None
    ) -> str:
        """The embedding model `name` stands for (an alias's target, else `name`), once it is known to be
        served. 400 `model_lacks_capability` for `auto`, a chat model or a provider with no embeddings; 400
        `invalid_value` when the model cannot give vectors of `dimensions`, or `inputs` of them would not
        fit one answer (`vectors.MAX_RESULT_BYTES`); 404 as `check` (unless configured and available, or a
        pass-through name); first, 403 outside the key's allow-list (`allowed`), as `check`."""
        policy = self.policy
        check_model(allowed, name, policy.resolve)
        model = policy.resolve(name)
        spec = policy.model(model)
        provider = model.partition("/")[0]
        if model == AUTO or (spec is not None and not spec.embeds):
            what = "`auto` picks among chat models" if model == AUTO else f"'{name}' is a chat model"
            raise InvalidRequest(
                f"{what}; embeddings need an embedding model: one of {await self._embedders(policy)}",
                code=LACKS,
                param="model",
            )
        if spec is None and provider in PASS_THROUGH and provider not in EMBEDDING_PASS_THROUGH:
            raise InvalidRequest(
                f"'{model}': {provider} serves no embeddings; embeddings need an embedding model: one of "
                f"{await self._embedders(policy)}",
                code=LACKS,
                param="model",
            )
        await self._served(policy, model, name)
        length = dimensions
        if spec is not None and spec.embedding is not None:
            length = spec.embedding.gives(dimensions)
            if length is None:
                raise InvalidRequest(
                    f"'{model}' cannot give vectors of {dimensions} numbers: {_lengths(spec.embedding)}",
                    code="invalid_value",
                    param="dimensions",
                )
        if length is not None and not vectors.fits(inputs, length):
            raise InvalidRequest(
                f"{inputs} vectors of {length} numbers exceed what one answer holds: send at most "
                f"{vectors.most_inputs(length)} inputs per request",
                code="invalid_value",
                param="input",
            )
        return model

    async def _embedders(self, policy: Policy) -> str:
        """The embedding models a client may name: those available here, else all the policy lists."""
        providers = await self.providers()
        models = policy.embedding_models()
        available = [m.id for m in models if m.provider in providers]
        return ", ".join(available or [m.id for m in models]) or "none is configured"

    async def _served(self, policy: Policy, model: str, asked: str | None = None) -> str:
        """Who serves `model` (SELF for `auto`); `asked`: what the client sent for it, for the 404."""
        providers = await self.providers()
        if model == AUTO:
            if not providers:
                raise ServiceUnavailable("no provider is available yet (is the executor running?)")
            return SELF
        spec = policy.model(model)
        if spec is not None and spec.provider in providers:
            return spec.provider
        provider, _, name = model.partition("/")
        if spec is None and name and provider in PASS_THROUGH and provider in providers:
            return provider
        what = f"'{model}'" if asked in (None, model) else f"'{asked}' (an alias of '{model}')"
        raise ModelNotFound(
            f"The model {what} does not exist or is not available here; GET /v1/models lists the models",
            param="model",
        )

    async def card(self, name: str, *, allowed: frozenset[str] | None = None) -> ModelCard:
        """The card of one servable model or alias (ModelNotFound / ServiceUnavailable / the allow-list's
        403 as `check`)."""
        policy = self.policy
        check_model(allowed, name, policy.resolve)
        return ModelCard(id=name, owned_by=await self._served(policy, policy.resolve(name), name))

    async def cards(self, *, allowed: frozenset[str] | None = None) -> list[ModelCard]:
        """`auto`, the models whose provider is announced, and the aliases of those (owned by theirs);
        with a key's allow-list (`allowed`), those it allows."""
        return await self._cards(self.policy, allowed)

    async def infos(
        self, *, allowed: frozenset[str] | None = None, embeddings: bool = False
    ) -> list[AnthropicModelInfo]:
        """The same models as `cards`, in Anthropic's shape, but the embedding models (and their aliases):
        the Anthropic API has no embeddings, and a model picker would offer them for messages. With
        `embeddings` (Gemini's Models API, which lists its embedding models by their methods), all."""
        policy = self.policy
        cards = await self._cards(policy, allowed)
        return [_info(card.id, policy) for card in cards if embeddings or not _embeds(policy, card.id)]

    async def info(
        self, name: str, *, allowed: frozenset[str] | None = None, embeddings: bool = False
    ) -> AnthropicModelInfo:
        """One model in Anthropic's shape (the errors of `card`); an alias answers as the model it stands
        for, as Anthropic's Get a Model resolves an alias to its model. An embedding model is not found
        unless `embeddings` (as `infos`)."""
        policy = self.policy
        check_model(allowed, name, policy.resolve)
        model = policy.resolve(name)
        if _embeds(policy, model) and not embeddings:
            raise ModelNotFound(
                f"'{name}' is an embedding model, which the Messages API cannot use; GET /v1/models lists "
                "the models it can",
                param="model",
            )
        await self._served(policy, model, name)
        return _info(model, policy)

    async def _cards(self, policy: Policy, allowed: frozenset[str] | None) -> list[ModelCard]:
        providers = await self.providers()
        cards = [ModelCard(id=AUTO, owned_by=SELF)]
        cards += [ModelCard(id=m.id, owned_by=m.provider) for m in policy.models if m.provider in providers]
        owners = {card.id: card.owned_by for card in cards}
        cards += [
            ModelCard(id=alias, owned_by=owners[target])
            for alias, target in policy.aliases.items()
            if target in owners
        ]
        if allowed is None:
            return cards
        return [card for card in cards if allows(allowed, card.id, policy.resolve)]


def _passed_through(name: str) -> bool:
    provider, _, model = name.partition("/")
    return provider in PASS_THROUGH and bool(model)


def _embeds(policy: Policy, name: str) -> bool:
    spec = policy.model(policy.resolve(name))
    return spec is not None and spec.embeds


def _lengths(spec: EmbeddingSpec) -> str:
    if spec.min_dimensions is None:
        return f"its vectors have {spec.dimensions} (leave `dimensions` out, or send {spec.dimensions})"
    return f"`dimensions` may be {spec.min_dimensions} to {spec.dimensions}"


def _info(name: str, policy: Policy) -> AnthropicModelInfo:
    """`name` (a model, an alias or `auto`) as Anthropic describes a model. The policy names models by
    their ids only, so an id is its own display name; an alias's says what it stands for."""
    if name == AUTO:
        return AnthropicModelInfo(id=name, display_name="auto (Switchyard picks the model for each request)")
    target = policy.aliases.get(name)
    spec = policy.model(target or name)
    return AnthropicModelInfo(
        id=name,
        display_name=f"{name} (alias of {target})" if target else name,
        max_input_tokens=None if spec is None else spec.context_window,
    )


def _unlisted(policy: Policy, names: Collection[str] | None) -> list[str]:
    """The `names` no request could be served under (check_listable)."""
    known = {AUTO, *(m.id for m in policy.models), *policy.aliases}
    return [n for n in names or () if n not in known and not _passed_through(n)]
