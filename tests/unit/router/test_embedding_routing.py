"""Routing embedding tasks: the client names an embedding model; a fallback is only a model of the same
vector space; the vectors' length and size are checked before anything is sent; chat never gets an
embedding model, nor an embedding task a chat model."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common import vectors
from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import ChatMessage, ChatRequest, Classification, EmbeddingRequest
from switchyard.common.policy import Policy, load_policy
from switchyard.router.chain import build_chain
from switchyard.router.embedding import (
    EmbeddingDimensions,
    ResultTooLarge,
    decide_embedding,
    estimate_input_tokens,
)
from switchyard.router.health import ModelSignal
from switchyard.router.routing import ModelLacksCapability, UnknownModel, decide

pytestmark = pytest.mark.unit
POLICY = load_policy()
ALL = {"local", "openai", "anthropic", "gemini"}
SMALL = "openai/text-embedding-3-small"
LARGE = "openai/text-embedding-3-large"
MINILM = "local/all-minilm-l6-v2"
GEMINI = "gemini/gemini-embedding-001"
AZURE = "azure/text-embedding-3-small"  # a second deployment of OpenAI's small model: the same space
EMBEDDERS = {m.id for m in POLICY.embedding_models()}


def _emb(model: str = SMALL, n: int = 2, dimensions: int | None = None) -> EmbeddingRequest:
    return EmbeddingRequest(model=model, input=[f"text {i}" for i in range(n)], dimensions=dimensions)


def _route(request: EmbeddingRequest, *, policy: Policy = POLICY, available: set[str] = ALL, **kw: Any):  # type: ignore[no-untyped-def]
    return decide_embedding(request=request, policy=policy, available=available, **kw)


def _with(*models: dict[str, Any], **top: Any) -> Policy:
    raw = POLICY.model_dump()
    raw["models"] = [*raw["models"], *models]
    raw.update(top)
    return Policy.model_validate(raw)


def _azure(**embedding: Any) -> dict[str, Any]:
    return {
        "id": AZURE,
        "provider": "azure",
        "upstream": "text-embedding-3-small",
        "tier": "fast",
        "input_per_1k": 0.00002,
        "output_per_1k": 0.0,
        "context_window": 8191,
        "embedding": {"dimensions": 1536, **embedding},
    }


def test_the_named_model_is_the_one_candidate_with_its_vectors_length_and_input_price() -> None:
    d = _route(_emb(SMALL), prompt_tokens=1000, tenant_id="acme")
    assert d.strategy == "single" and d.tier == "fast" and [c.model for c in d.candidates] == [SMALL]
    c = d.candidates[0]
    assert (c.provider, c.upstream_model, c.dimensions) == ("openai", "text-embedding-3-small", 1536)
    assert c.estimated_cost_usd == d.estimated_cost_usd == pytest.approx(0.00002)  # 1,000 input tokens
    assert d.estimated_prompt_tokens == 1000
    r = d.reasons
    assert (r["kind"], r["pinned"], r["chosen"], r["space"], r["dimensions"]) == (
        "embedding",
        SMALL,
        SMALL,
        "text-embedding-3-small",
        1536,
    )
    assert r["features"] == {"type": "embedding", "inputs": 2, "prompt_tokens": 1000, "dimensions": None}
    assert r["why"] == "the client named the model" and r["rejected"] == []
    local = _route(_emb(MINILM), available={"local"})
    assert [(c.model, c.dimensions, c.estimated_cost_usd) for c in local.candidates] == [(MINILM, 384, 0.0)]
    assert local.estimated_prompt_tokens == estimate_input_tokens(_emb(MINILM))  # no count given: estimated


@pytest.mark.parametrize("model", ["auto", "openai/gpt-6-sol", "local/smollm2-135m-instruct"])
def test_auto_and_chat_models_are_refused_with_the_models_to_use(model: str) -> None:
    with pytest.raises(ModelLacksCapability) as caught:
        _route(_emb(model), available={"local", "openai"})
    assert caught.value.code == "model_lacks_capability"
    message = caught.value.message
    assert message.endswith(f"embeddings need an embedding model: one of {MINILM}, {SMALL}, {LARGE}")
    assert GEMINI not in message  # its provider is not announced


def test_an_anthropic_name_is_refused_and_an_unknown_local_one_does_not_exist() -> None:
    with pytest.raises(ModelLacksCapability, match="Anthropic has no embeddings API"):
        _route(_emb("anthropic/claude-embed"))
    with pytest.raises(UnknownModel) as caught:
        _route(_emb("local/bge-small"))
    assert caught.value.code == "model_not_found"
    with pytest.raises(UnknownModel):
        _route(_emb("gemini/text-embedding-004"), available={"openai"})  # provider not announced


def test_an_openai_or_gemini_model_the_policy_does_not_list_passes_through_as_named() -> None:
    d = _route(_emb("openai/text-embedding-ada-002"))
    assert [(c.model, c.provider, c.upstream_model, c.tier) for c in d.candidates] == [
        ("openai/text-embedding-ada-002", "openai", "text-embedding-ada-002", "pinned")
    ]
    assert d.candidates[0].dimensions is None and d.estimated_cost_usd == 0.0  # not known, not priced
    g = _route(_emb("gemini/text-embedding-004", dimensions=256))
    assert g.candidates[0].dimensions == 256 and g.reasons["pinned"] == "gemini/text-embedding-004"
    with pytest.raises(ModelLacksCapability, match="must be listed there with its `embedding`"):
        _route(_emb("mistral/mistral-embed"), available={*ALL, "mistral"})  # an API the router cannot know


def test_a_fallback_is_only_another_deployment_of_the_same_vector_space() -> None:
    """text-embedding-3-large and Gemini both give 3,072 numbers, and neither is the small model's space:
    only the second deployment of the small model may stand in for it."""
    policy = _with(_azure())
    d = _route(_emb(SMALL), policy=policy, available={*ALL, "azure"})
    assert [c.model for c in d.candidates] == [SMALL, AZURE]
    assert all(c.dimensions == 1536 for c in d.candidates)
    down = _route(_emb(SMALL), policy=policy, available={"azure", "local"})
    assert [c.model for c in down.candidates] == [AZURE]
    assert down.reasons["why"].startswith(f"the client named {SMALL} (provider openai not available)")
    large = _route(_emb(LARGE, dimensions=3072), policy=policy, available={*ALL, "azure"})
    assert [c.model for c in large.candidates] == [LARGE]  # Gemini's 3,072 numbers are another space
    with pytest.raises(NoProviderAvailable) as caught:
        _route(_emb(LARGE), policy=policy, available={"gemini", "azure", "local"})
    assert "provider openai not available" in caught.value.message


def test_health_puts_a_failing_deployment_behind_its_twin() -> None:
    policy = _with(_azure())
    health = {SMALL: ModelSignal(breaker="open")}
    d = _route(_emb(SMALL), policy=policy, available={*ALL, "azure"}, health=health)
    assert [c.model for c in d.candidates] == [AZURE, SMALL]
    assert d.reasons["scores"][1]["demoted"] == "circuit breaker open"
    assert (
        d.reasons["why"]
        == f"the client named {SMALL} (circuit breaker open): {AZURE} serves the same vector space"
    )


def test_the_dimensions_asked_for_must_be_a_length_the_model_gives() -> None:
    assert _route(_emb(SMALL, dimensions=256)).candidates[0].dimensions == 256
    assert _route(_emb(MINILM, dimensions=384)).candidates[0].dimensions == 384  # its own length
    assert _route(_emb(GEMINI, dimensions=768)).candidates[0].dimensions == 768
    with pytest.raises(EmbeddingDimensions) as caught:
        _route(_emb(MINILM, dimensions=256))
    assert caught.value.code == "embedding_dimensions_unsupported"
    assert caught.value.message == f"the model '{MINILM}' gives only vectors of 384 dimensions, not 256"
    with pytest.raises(EmbeddingDimensions, match="gives vectors of 128 to 3072 dimensions, not 64"):
        _route(_emb(GEMINI, dimensions=64))
    with pytest.raises(EmbeddingDimensions):
        _route(_emb(SMALL, dimensions=2048))  # longer than its own


def test_a_twin_that_cannot_shorten_its_vectors_is_dropped() -> None:
    policy = _with(_azure())  # declared without min_dimensions: only 1,536 numbers
    d = _route(_emb(SMALL, dimensions=256), policy=policy, available={*ALL, "azure"})
    assert [c.model for c in d.candidates] == [SMALL]
    assert d.reasons["rejected"] == [{"model": AZURE, "reason": "does not give vectors of 256 dimensions"}]


def test_vectors_too_large_for_one_answer_are_refused_naming_the_most_inputs() -> None:
    # 32 MiB: OpenAI's largest request (2,048 vectors of 3,072 numbers) fits; absurd lengths do not
    assert vectors.most_inputs(3072) == 2730
    assert len(_route(_emb(LARGE, n=2048)).candidates) == 1
    ada = "openai/text-embedding-ada-002"  # pass-through, length given
    assert _route(_emb(ada, n=1024, dimensions=8192)).candidates
    with pytest.raises(ResultTooLarge) as caught:
        _route(_emb(ada, n=1025, dimensions=8192))
    assert caught.value.code == "embedding_result_too_large"
    assert caught.value.message.endswith("send at most 1024 inputs per request")
    with pytest.raises(ResultTooLarge, match="send at most 128 inputs"):
        _route(_emb(ada, n=129, dimensions=65536))
    assert _route(_emb(ada, n=2048)).candidates  # length not known: the executor checks


def test_a_tenants_denied_models_and_tier_cap_hold_for_embeddings() -> None:
    policy = _with(tenants={"frugal": {"max_tier": "fast", "denied_models": [SMALL]}})
    with pytest.raises(UnknownModel, match=f"the model '{SMALL}' is not available to this tenant"):
        _route(_emb(SMALL), policy=policy, tenant_id="frugal")
    with pytest.raises(UnknownModel, match="not available to this tenant"):
        _route(_emb(LARGE), policy=policy, tenant_id="frugal")  # standard, above its cap
    assert [c.model for c in _route(_emb(GEMINI), policy=policy, tenant_id="frugal").candidates] == [GEMINI]
    assert [c.model for c in _route(_emb(SMALL), policy=policy, tenant_id="other").candidates] == [SMALL]
    twin = _with(_azure(), tenants={"frugal": {"denied_models": [SMALL]}})
    d = _route(_emb(SMALL), policy=twin, available={*ALL, "azure"}, tenant_id="frugal")
    assert [c.model for c in d.candidates] == [AZURE] and d.reasons["tenant"] == {
        "id": "frugal",
        "override": True,
    }


def test_the_budget_headroom_counts_the_input_tokens_only() -> None:
    d = _route(_emb(SMALL), prompt_tokens=1000, headroom_usd=0.00003)  # 0.00002 for 1,000 tokens
    assert d.reasons["budget"] == {"headroom_usd": 0.00003, "state": "low"}
    with pytest.raises(NoProviderAvailable, match="exceeds the budget headroom"):
        _route(_emb(SMALL), prompt_tokens=1000, headroom_usd=0.00001)
    assert _route(_emb(MINILM), prompt_tokens=10_000, headroom_usd=0.0).candidates  # free: always fits


# Chat is never given an embedding model.

CHAT = ChatRequest(messages=[ChatMessage(role="user", content="What is the capital of France?")])


def _cls(complexity: float, task_type: str = "qa") -> Classification:
    return Classification(
        type=task_type, confidence=0.9, complexity=complexity, urgency=0.5, model_version="t", latency_ms=1
    )


@pytest.mark.parametrize("available", [{"local"}, {"openai"}, {"gemini"}, ALL])
@pytest.mark.parametrize("complexity", [0.0, 0.4, 0.95])
def test_chat_never_routes_to_an_embedding_model(available: set[str], complexity: float) -> None:
    try:
        d = decide(request=CHAT, classification=_cls(complexity), policy=POLICY, available=available)
    except NoProviderAvailable:
        return  # nothing serves chat here (gemini alone has no chat model listed): not an embedding model
    assert not {c.model for c in d.candidates} & EMBEDDERS
    if available == {"local"}:
        assert [c.model for c in d.candidates] == ["local/smollm2-135m-instruct"]


@pytest.mark.parametrize("model", sorted(EMBEDDERS))
def test_an_embedding_model_named_for_chat_is_refused(model: str) -> None:
    denied = _with(tenants={"acme": {"denied_models": [model]}})
    for policy, tenant in ((POLICY, ""), (denied, "acme")):  # denied to the tenant: not passed through either
        request = CHAT.model_copy(update={"model": model})
        with pytest.raises(ModelLacksCapability) as caught:
            decide(request=request, classification=_cls(0.2), policy=policy, available=ALL, tenant_id=tenant)
        assert caught.value.message == f"the model '{model}' is an embedding model: send it to /v1/embeddings"


def test_a_chain_never_keeps_an_embedding_model_even_if_one_is_ordered() -> None:
    chain = build_chain(
        POLICY,
        order=[MINILM, SMALL, "local/smollm2-135m-instruct"],
        available=ALL,
        required=set(),
        prompt_tokens=10,
        output_tokens=10,
        headroom_usd=None,
        max_tier=None,
    )
    assert [s.id for s in chain.kept] == ["local/smollm2-135m-instruct"]


def test_no_chain_of_the_policy_or_a_tenant_may_name_an_embedding_model() -> None:
    chain = {"primary": MINILM, "fallback": []}
    with pytest.raises(ValueError, match="is an embedding model"):
        _with(chains={**POLICY.model_dump()["chains"], "qa": chain})
    with pytest.raises(ValueError, match="is an embedding model"):
        _with(tenants={"acme": {"chains": {"qa": chain}}})


def test_an_alias_of_an_embedding_model_routes_as_the_model() -> None:
    """`text-embedding-ada-002` in a client's code, served by the model the policy names for it."""
    policy = _with(aliases={"text-embedding-ada-002": SMALL})
    d = _route(_emb("text-embedding-ada-002"), policy=policy, prompt_tokens=10)
    assert [c.model for c in d.candidates] == [SMALL] and d.reasons["pinned"] == SMALL
