"""The model catalogue: what `model` values this deployment serves, from the policy and the providers
the executors announced."""

from __future__ import annotations

from nats.js import JetStreamContext

from switchyard.common.policy import Policy
from switchyard.common.providers import AvailableProviders
from switchyard.gateway.errors import ModelNotFound, ServiceUnavailable
from switchyard.gateway.schemas import ModelCard

AUTO = "auto"
# Providers whose upstream serves more than the policy lists: `<provider>/<any name>` is passed through.
PASS_THROUGH = ("openai", "anthropic", "gemini")


class Catalog:
    def __init__(self, policy: Policy, js: JetStreamContext, *, refresh_s: float) -> None:
        self.policy = policy
        self._announced = AvailableProviders(lambda: js, refresh_s=refresh_s)

    async def providers(self) -> set[str]:
        return await self._announced.names()

    async def check(self, model: str) -> None:
        """Raises ModelNotFound unless `model` is `auto`, a configured model, or a pass-through name."""
        providers = await self.providers()
        if model == AUTO:
            if not providers:
                raise ServiceUnavailable("no provider is available yet (is the executor running?)")
            return
        spec = self.policy.model(model)
        if spec is not None and spec.provider in providers:
            return
        provider, _, name = model.partition("/")
        if spec is None and name and provider in PASS_THROUGH and provider in providers:
            return
        raise ModelNotFound(
            f"The model '{model}' does not exist or is not available here; GET /v1/models lists the models",
            param="model",
        )

    async def card(self, model: str) -> ModelCard:
        """The card of one servable `model` (ModelNotFound / ServiceUnavailable as `check`)."""
        await self.check(model)
        if model == AUTO:
            return ModelCard(id=AUTO, owned_by="switchyard")
        spec = self.policy.model(model)
        return ModelCard(id=model, owned_by=spec.provider if spec else model.partition("/")[0])

    async def cards(self) -> list[ModelCard]:
        providers = await self.providers()
        cards = [ModelCard(id=AUTO, owned_by="switchyard")]
        cards += [
            ModelCard(id=m.id, owned_by=m.provider) for m in self.policy.models if m.provider in providers
        ]
        return cards
