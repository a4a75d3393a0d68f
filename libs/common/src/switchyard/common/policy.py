"""The routing policy: tiers, models and their prices, per-task-type chains, strategies, budgets and
per-tenant overrides. Read by the router (decisions), billing (prices), the executor (model limits) and
the gateway (the model catalogue). Validated on load with errors that name the offending field.

Version 2 only adds sections; a version-1 file (models and thresholds) is still a valid policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.common.config import load_yaml_model
from switchyard.common.events.tasks import TASK_TYPES

Number = TypeVar("Number", float, Decimal)

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")
# Cheapest to most capable. `coordination` holds models that are good at tool use and multi-step plans.
TIER_ORDER = ("local", "fast", "coordination", "standard", "premium")
# `reasoning`: the model takes a thinking budget or effort (Anthropic's extended thinking, OpenAI's
# reasoning_effort, Gemini's thinkingBudget); other models are sent a task without it. `json_schema`: its
# answers can be held to a JSON schema (Anthropic's structured outputs) without a free JSON mode; a model
# with `json_mode` does both. `choices`: one call gives several answers to the same messages (OpenAI's `n`,
# Gemini's `candidateCount`); Anthropic's Messages API gives one. `logprobs`: it returns its output tokens'
# log probabilities (OpenAI's `logprobs` / `top_logprobs`, Gemini's `responseLogprobs`); Anthropic's API and
# the local model (llama-cpp-python computes them only with logits kept for every position) do not.
Capability = Literal["tools", "vision", "pdf", "json_mode", "json_schema", "reasoning", "choices", "logprobs"]
AUTO = "auto"  # the model name that asks the router to choose
MAX_ALIAS_CHARS = 200
Check = Literal["json", "code", "refusal", "truncation", "confidence"]
ALL_CHECKS: tuple[Check, ...] = ("json", "code", "refusal", "truncation", "confidence")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LongContext(_Strict):
    """A provider's dearer rate for long prompts: a request whose prompt (cache reads and writes included)
    has more than `above` tokens is priced whole at the multipliers (OpenAI's GPT-6 above 272K tokens: 2x
    input and cache, 1.5x output; Claude Haiku 5.5 above 100K: 5x)."""

    above: int = Field(gt=0, description="prompt tokens above which the whole request costs more")
    input_multiplier: float = Field(gt=0, description="on the input and prompt-cache prices")
    output_multiplier: float = Field(gt=0, description="on the output price")


class EmbeddingSpec(_Strict):
    """What an embedding model returns. `space` names its vectors' space: a task falls back only to a model
    of the same space (vectors of two models are not comparable even at the same length; the default, the
    model's upstream name, allows no fallback but another deployment of the same model)."""

    dimensions: int = Field(gt=0, description="the length of its vectors")
    min_dimensions: int | None = Field(
        default=None,
        gt=0,
        description="the shortest vectors it gives when asked (`dimensions`); unset: only its own length",
    )
    max_inputs: int = Field(default=2048, gt=0, description="texts one call may hold")
    space: str | None = Field(default=None, description="its vector space; unset: its upstream name")

    @model_validator(mode="after")
    def _ordered(self) -> EmbeddingSpec:
        if self.min_dimensions is not None and self.min_dimensions > self.dimensions:
            raise ValueError(f"min_dimensions ({self.min_dimensions}) exceeds dimensions ({self.dimensions})")
        return self

    def gives(self, dimensions: int | None) -> int | None:
        """The length of the vectors asked for (`dimensions`, or None: its own), None if it cannot."""
        if dimensions is None or dimensions == self.dimensions:
            return self.dimensions
        if self.min_dimensions is not None and self.min_dimensions <= dimensions <= self.dimensions:
            return dimensions
        return None


class ModelSpec(_Strict):
    id: str = Field(
        pattern=r"^[a-z0-9_-]+/.+$", description="<provider>/<name>, what clients pass as `model`"
    )
    provider: str
    upstream: str = Field(description="the model name the provider knows")
    tier: str
    input_per_1k: float = Field(ge=0, description="USD per 1K input tokens")
    output_per_1k: float = Field(ge=0, description="USD per 1K output tokens")
    cached_input_per_1k: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1K input tokens the provider read from its prompt cache (OpenAI's cached "
        "input, Anthropic's cache reads, Gemini's cached content); unset: the input price",
    )
    cache_write_per_1k: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1K input tokens written to the provider's prompt cache (Anthropic's cache "
        "writes, 1.25x input for 5 minutes); unset: the input price",
    )
    context_window: int = Field(gt=0)
    long_context: LongContext | None = None
    capabilities: frozenset[Capability] = frozenset()
    rpm: int | None = Field(default=None, ge=1, description="requests per minute this deployment may send")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute this deployment may send")
    embedding: EmbeddingSpec | None = Field(
        default=None,
        description="set for an embedding model (`/v1/embeddings`): it serves embeddings only, priced by "
        "`input_per_1k`; `context_window` is the most tokens of one input",
    )

    @model_validator(mode="after")
    def _long_context_within_the_window(self) -> ModelSpec:
        if self.long_context is not None and self.long_context.above >= self.context_window:
            raise ValueError(
                f"long_context.above ({self.long_context.above}) must be below context_window "
                f"({self.context_window})"
            )
        if self.embedding is not None and (self.capabilities or self.output_per_1k or self.long_context):
            raise ValueError("an embedding model has no capabilities, output price or long-context rate")
        return self

    @property
    def embeds(self) -> bool:
        return self.embedding is not None

    def space(self) -> str | None:
        """An embedding model's vector space (None for a chat model)."""
        if self.embedding is None:
            return None
        return self.embedding.space or self.upstream

    def serves(self) -> frozenset[str]:
        """Its capabilities, with what they imply: JSON mode holds an answer to a schema too."""
        if "json_mode" in self.capabilities:
            return self.capabilities | {"json_schema"}
        return frozenset(self.capabilities)

    def multipliers(self, prompt_tokens: int) -> tuple[float, float]:
        """The input (and cache) and output price multipliers for a prompt of this size: 1 and 1 unless
        it is long enough for the provider's long-context rate."""
        long = self.long_context
        if long is None or prompt_tokens <= long.above:
            return 1.0, 1.0
        return long.input_multiplier, long.output_multiplier

    def cost(self, prompt_tokens: int, completion_tokens: int, *, read: int = 0, written: int = 0) -> float:
        """USD for a call, in floats (estimates, budget counters): `read` and `written` are the prompt
        tokens (of `prompt_tokens`) the provider read from or wrote to its prompt cache."""
        return self.cost_in(float, prompt_tokens, completion_tokens, read=read, written=written)

    def cost_in(
        self,
        number: Callable[[float], Number],
        prompt_tokens: int,
        completion_tokens: int,
        *,
        read: int = 0,
        written: int = 0,
    ) -> Number:
        """USD for a call, computed in `number`s: floats for estimates, decimals made from the prices as
        the policy writes them for billing, by the one formula. A long prompt is priced whole at the
        provider's long-context rate."""
        read, written = cache_split(prompt_tokens, read, written)
        into, out = (number(m) for m in self.multipliers(prompt_tokens))
        return (
            (
                (prompt_tokens - read - written) * number(self.input_per_1k)
                + read * number(self.cache_read_price())
                + written * number(self.cache_write_price())
            )
            * into
            + completion_tokens * number(self.output_per_1k) * out
        ) / number(1000)

    def worst_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The most a call can cost: every prompt token at the dearest of the input and cache prices
        (a cache write costs more than plain input), at the long-context rate where the prompt reaches
        it."""
        dearest = max(self.input_per_1k, self.cache_read_price(), self.cache_write_price())
        into, out = self.multipliers(prompt_tokens)
        return (prompt_tokens * dearest * into + completion_tokens * self.output_per_1k * out) / 1000.0

    def cache_read_price(self) -> float:
        return self.input_per_1k if self.cached_input_per_1k is None else self.cached_input_per_1k

    def cache_write_price(self) -> float:
        return self.input_per_1k if self.cache_write_per_1k is None else self.cache_write_per_1k


def cache_split(prompt_tokens: int, read: int, written: int) -> tuple[int, int]:
    """The cache reads and writes of a prompt, bounded by it (a provider's counts are trusted only that
    far: no prompt token is ever priced twice)."""
    read = min(max(read, 0), prompt_tokens)
    return read, min(max(written, 0), prompt_tokens - read)


class Thresholds(_Strict):
    fast_below: float = Field(default=0.3, ge=0, le=1)
    premium_above: float = Field(default=0.8, ge=0, le=1)
    premium_share: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="when set, the premium threshold follows the traffic: the complexity above which this "
        "share of the last `window` tasks falls (never below fast_below); premium_above until warmed up",
    )
    window: int = Field(default=2000, ge=50, description="recent tasks the adaptive threshold looks at")
    min_samples: int = Field(
        default=200, ge=1, description="tasks seen before the adaptive threshold is used"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.fast_below > self.premium_above:
            raise ValueError("thresholds.fast_below must not exceed thresholds.premium_above")
        return self


class Chain(_Strict):
    """Models for one task type: `primary` then `fallback` normally, `cost_sensitive` when money is short
    or the task is easy (coding -> a strong code model, fallback another, cost-sensitive a cheap one)."""

    primary: str
    fallback: list[str] = Field(default_factory=list)
    cost_sensitive: str | None = None

    def models(self) -> list[str]:
        return [self.primary, *self.fallback, *([self.cost_sensitive] if self.cost_sensitive else [])]


class Cascade(_Strict):
    enabled: bool = True
    types: list[str] = Field(default_factory=list, description="task types cascaded; empty: all")
    from_tiers: list[str] = Field(default_factory=lambda: ["standard"], description="wanted tiers cascaded")
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="below: the cheap answer is escalated")
    checks: list[Check] = Field(default_factory=lambda: list(ALL_CHECKS))
    escalation_prior: float = Field(default=0.3, ge=0, le=1, description="for the cost estimate")


class Parallel(_Strict):
    enabled: bool = True
    urgency_above: float = Field(default=0.85, ge=0, le=1, description="hedge (race) tasks this urgent")
    fan_out: int = Field(default=2, ge=2, le=4)
    best_of_types: list[str] = Field(default_factory=list, description="task types run best-of, not raced")


class Strategies(_Strict):
    cascade: Cascade = Cascade()
    parallel: Parallel = Parallel()


class Budget(_Strict):
    """Budget-aware downgrades on the tenant's headroom (USD left). No headroom value means no limit."""

    downgrade_below_usd: float = Field(default=1.0, ge=0, description="below: the cost-sensitive route")
    downgrade_max_tier: str = Field(default="fast", description="the best tier when downgraded")


class Health(_Strict):
    """How live provider health (shared EMA statistics, breakers, rate limits) reorders a chain."""

    ema_alpha: float = Field(default=0.2, gt=0, le=1)
    min_samples: int = Field(default=5, ge=1, description="before this, a model counts as healthy")
    demote_below_success: float = Field(default=0.6, ge=0, le=1)
    recovery_s: float = Field(default=300.0, gt=0, description="a penalty fades with this time constant")
    min_rate_headroom: float = Field(default=0.05, ge=0, le=1, description="below: demoted")


class TenantOverride(_Strict):
    max_tier: str | None = None
    denied_models: list[str] = Field(default_factory=list)
    chains: dict[str, Chain] = Field(default_factory=dict)
    thresholds: Thresholds | None = None
    strategies: Strategies | None = None
    budget: Budget | None = None


class Policy(_Strict):
    version: str
    thresholds: Thresholds = Thresholds()
    expected_output_tokens: int = Field(default=256, gt=0)
    expected_output_by_type: dict[str, int] = Field(default_factory=dict)
    models: list[ModelSpec] = Field(min_length=1)
    chains: dict[str, Chain] = Field(default_factory=dict)
    strategies: Strategies = Strategies()
    budget: Budget = Budget()
    health: Health = Health()
    tenants: dict[str, TenantOverride] = Field(default_factory=dict)
    # Names clients send for a model of this policy, or for `auto`: what their code says ("gpt-4o-mini",
    # "text-embedding-ada-002", "fast") served by what the deployment has. A task is routed as if the
    # target had been named; an alias is never a model id or another alias.
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        seen: set[str] = set()
        for m in self.models:
            if m.tier not in TIER_ORDER:
                raise ValueError(f"model {m.id}: unknown tier {m.tier!r} (tiers: {', '.join(TIER_ORDER)})")
            if not m.id.startswith(f"{m.provider}/"):
                raise ValueError(f"model {m.id}: the id must start with its provider '{m.provider}/'")
            if m.id in seen:
                raise ValueError(f"model {m.id} is listed twice")
            seen.add(m.id)
        embedders = {m.id for m in self.models if m.embeds}
        for alias, target in self.aliases.items():
            if not alias or len(alias) > MAX_ALIAS_CHARS or alias.strip() != alias:
                raise ValueError(f"aliases: {alias!r} is not a model name (1-{MAX_ALIAS_CHARS} characters)")
            if alias == AUTO or alias in seen:
                raise ValueError(f"aliases: {alias!r} is a model's own name")
            if target != AUTO and target not in seen:
                raise ValueError(f"aliases.{alias}: {target!r} is neither a listed model nor {AUTO!r}")
        self._check_refs("", self.chains, self.strategies, self.budget, seen, embedders)
        for tenant, o in self.tenants.items():
            where = f"tenants.{tenant}."
            if o.max_tier is not None and o.max_tier not in TIER_ORDER:
                raise ValueError(f"{where}max_tier: unknown tier {o.max_tier!r}")
            for model in o.denied_models:
                if model not in seen:
                    raise ValueError(f"{where}denied_models: unknown model {model!r}")
            self._check_refs(where, o.chains, o.strategies, o.budget, seen, embedders)
            _check_tenant_chains(where, o, {m.id: m.tier for m in self.models})
            try:
                over(self.thresholds, o.thresholds)
            except ValidationError as exc:
                raise ValueError(f"{where}thresholds: {exc.errors()[0]['msg']}") from exc
        return self

    @staticmethod
    def _check_refs(
        where: str,
        chains: dict[str, Chain],
        strategies: Strategies | None,
        budget: Budget | None,
        seen: set[str],
        embedders: set[str],
    ) -> None:
        for task_type, chain in chains.items():
            if task_type not in TASK_TYPES:
                raise ValueError(
                    f"{where}chains: unknown task type {task_type!r} (types: {', '.join(TASK_TYPES)})"
                )
            for model in chain.models():
                if model not in seen:
                    raise ValueError(f"{where}chains.{task_type}: unknown model {model!r}")
                if model in embedders:
                    raise ValueError(f"{where}chains.{task_type}: {model!r} is an embedding model")
        if strategies is not None:
            for name in (*strategies.cascade.types, *strategies.parallel.best_of_types):
                if name not in TASK_TYPES:
                    raise ValueError(f"{where}strategies: unknown task type {name!r}")
            for tier in strategies.cascade.from_tiers:
                if tier not in TIER_ORDER:
                    raise ValueError(f"{where}strategies.cascade.from_tiers: unknown tier {tier!r}")
        if budget is not None and budget.downgrade_max_tier not in TIER_ORDER:
            raise ValueError(f"{where}budget.downgrade_max_tier: unknown tier {budget.downgrade_max_tier!r}")

    def resolve(self, name: str) -> str:
        """The model id (or `auto`) a name a client sent stands for: an alias's target, else the name."""
        return self.aliases.get(name, name)

    def model(self, model_id: str) -> ModelSpec | None:
        for m in self.models:
            if m.id == model_id:
                return m
        return None

    def in_tier(self, tier: str) -> list[ModelSpec]:
        """The tier's chat models (embedding models have a tier for budgets and limits, but are never
        routed to by complexity)."""
        return [m for m in self.models if m.tier == tier and not m.embeds]

    def chat_models(self) -> list[ModelSpec]:
        return [m for m in self.models if not m.embeds]

    def embedding_models(self) -> list[ModelSpec]:
        return [m for m in self.models if m.embeds]

    def output_tokens(self, task_type: str) -> int:
        return self.expected_output_by_type.get(task_type, self.expected_output_tokens)

    def for_tenant(self, tenant_id: str) -> Policy:
        """This policy with the tenant's overrides applied (itself when the tenant has none)."""
        o = self.tenants.get(tenant_id)
        if o is None:
            return self
        allowed = TIER_ORDER[: TIER_ORDER.index(o.max_tier) + 1] if o.max_tier else TIER_ORDER
        models = [m for m in self.models if m.tier in allowed and m.id not in o.denied_models]
        kept = {m.id for m in models}
        chains = {t: c for t, c in {**self.chains, **o.chains}.items() if c.primary in kept}
        return self.model_copy(
            update={
                "models": models,
                "chains": chains,
                "thresholds": over(self.thresholds, o.thresholds),
                "strategies": over(self.strategies, o.strategies),
                "budget": over(self.budget, o.budget),
                "tenants": {},
            }
        )

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


Section = TypeVar("Section", bound=BaseModel)


def over(base: Section, override: Section | None) -> Section:
    """`base` with the fields `override` sets (the ones its YAML names, section by section): a tenant's
    `thresholds: {fast_below: 0.2}` changes that threshold and keeps the policy's others."""
    if override is None:
        return base
    data = base.model_dump()
    for name in override.model_fields_set:
        mine, theirs = getattr(override, name), getattr(base, name)
        both = isinstance(mine, BaseModel) and isinstance(theirs, BaseModel)
        data[name] = over(theirs, mine).model_dump() if both else mine
    return type(base).model_validate(data)


def _check_tenant_chains(where: str, override: TenantOverride, tiers: dict[str, str]) -> None:
    """A tenant's own chain names only models the tenant may use (else it is dropped without a word)."""
    cap = TIER_ORDER.index(override.max_tier) if override.max_tier is not None else len(TIER_ORDER)
    for task_type, chain in override.chains.items():
        for model in chain.models():
            if model in override.denied_models:
                raise ValueError(f"{where}chains.{task_type}: {model!r} is denied to the tenant")
            if TIER_ORDER.index(tiers[model]) > cap:
                above = f"above the tenant's max_tier ({override.max_tier})"
                raise ValueError(f"{where}chains.{task_type}: {model!r} is {above}")


def load_policy(path: Path | None = None) -> Policy:
    return load_yaml_model(path or DEFAULT_POLICY, Policy, "routing policy")
