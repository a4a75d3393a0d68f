"""The model catalogue: what `model` values this deployment serves, from the policy and the providers
the executors announced."""

from __future__ import annotations

from nats.js import JetStreamContext

from switchyard.common.policy import Policy
from switchyard.common.providers import AvailableProviders
from switchyard.gateway.errors import ModelNotFound, ServiceUnavailable
from switchyard.gateway.schemas import ModelCard

AUTO = "auto"
SELF = "switchyard"  # owner of `auto`
# Providers whose upstream serves more than the policy lists: `<provider>/<any name>` is passed through.
PASS_THROUGH = ("openai", "anthropic", "gemini")


class Catalog:
    def __init__(self, policy: Policy, js: JetStreamContext, *, refresh_s: float) -> None:
        self.policy = policy
        self._announced = AvailableProviders(lambda: js, refresh_s=refresh_s)

    async def providers(self) -> set[str]:
        return await self._announced.names()

    async def check(self, model: str) -> str:
        """Who serves `model`: SELF for `auto`, else its provider. Raises ModelNotFound unless it
        is `auto`, a configured model, or a pass-through name."""
        providers = await self.providers()
        if model == AUTO:
            if not providers:
                raise ServiceUnavailable("no provider is available yet (is the executor running?)")
            return SELF
        spec = self.policy.model(model)
        if spec is not None and spec.provider in providers:
            return spec.provider
        provider, _, name = model.partition("/")
        if spec is None and name and provider in PASS_THROUGH and provider in providers:
            return provider
        raise ModelNotFound(
            f"The model '{model}' does not exist or is not available here; GET /v1/models lists the models",
            param="model",
        )

    async def card(self, model: str) -> ModelCard:
        """The card of one servable `model` (ModelNotFound / ServiceUnavailable as `check`)."""
        return ModelCard(id=model, owned_by=await self.check(model))

    async def cards(self) -> list[ModelCard]:
        providers = await self.providers()
        cards = [ModelCard(id=AUTO, owned_by=SELF)]
        cards += [
            ModelCard(id=m.id, owned_by=m.provider) for m in self.policy.models if m.provider in providers
        ]
        return cards
