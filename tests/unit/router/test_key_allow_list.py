"""An API key's model allow-list (`TaskSubmitted.allowed_models`) in routing: `auto` picks, falls back and
escalates only among the allowed models; a named model outside the list is refused; an old task without
the field routes as before."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    EmbeddingRequest,
    TaskSubmitted,
)
from switchyard.common.policy import Policy, load_policy
from switchyard.router.embedding import decide_embedding
from switchyard.router.routing import ModelNotAllowed, decide

pytestmark = pytest.mark.unit
POLICY = load_policy()
EVERY = {"local", "openai", "anthropic", "gemini"}


def _cls(complexity: float, type_: str = "qa") -> Classification:
    return Classification(
        type=type_, confidence=0.9, complexity=complexity, urgency=0.5, model_version="t", latency_ms=1
    )


def _req(model: str = "auto") -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage(role="user", content="What is 2 + 2?")])


@pytest.mark.parametrize(("complexity", "type_"), [(0.1, "qa"), (0.9, "reasoning"), (0.5, "coding")])
def test_auto_routes_falls_back_and_cascades_only_among_the_allowed_models(
    complexity: float, type_: str
) -> None:
    allowed = ["auto", "openai/gpt-6-luna", "anthropic/claude-haiku-5-5"]
    d = decide(
        request=_req(),
        classification=_cls(complexity, type_),
        policy=POLICY,
        available=EVERY,
        allowed_models=allowed,
    )
    models = [c.model for c in d.candidates]
    assert models and set(models) <= set(allowed), models
    assert d.reasons["allowed_models"] == sorted(allowed)
    unrestricted = decide(
        request=_req(), classification=_cls(complexity, type_), policy=POLICY, available=EVERY
    )
    assert set(c.model for c in unrestricted.candidates) - set(allowed)  # the list is what narrowed it


def test_an_alias_in_the_list_stands_for_its_target_and_a_named_model_outside_it_is_refused() -> None:
    policy = Policy.model_validate({**POLICY.model_dump(), "aliases": {"cheap": "openai/gpt-6-luna"}})
    pinned = decide(
        request=_req("openai/gpt-6-luna"),
        classification=_cls(0.5),
        policy=policy,
        available=EVERY,
        allowed_models=["cheap"],
    )
    assert [c.model for c in pinned.candidates] == ["openai/gpt-6-luna"]
    for model in ("openai/gpt-6.1-sol", "openai/anything-passed-through", "auto"):
        with pytest.raises(ModelNotAllowed) as refused:
            decide(
                request=_req(model),
                classification=_cls(0.5),
                policy=policy,
                available=EVERY,
                allowed_models=["cheap"],
            )
        assert refused.value.code == "model_not_allowed"
        assert f"'{model}' is not in this API key's allowed models" in refused.value.message


def test_auto_with_no_routable_allowed_model_says_so() -> None:
    with pytest.raises(NoProviderAvailable) as refused:
        decide(
            request=_req(),
            classification=_cls(0.5),
            policy=POLICY,
            available=EVERY,
            allowed_models=["auto", "openai/some-pass-through"],
        )
    assert "none of this API key's allowed models (openai/some-pass-through)" in refused.value.message


def test_an_embedding_falls_back_only_to_an_allowed_model_of_its_space() -> None:
    azure = {
        "id": "azure/text-embedding-3-small",
        "provider": "azure",
        "upstream": "text-embedding-3-small",
        "tier": "fast",
        "input_per_1k": 0.00002,
        "output_per_1k": 0.0,
        "context_window": 8191,
        "embedding": {"dimensions": 1536},
    }
    raw = POLICY.model_dump()
    policy = Policy.model_validate({**raw, "models": [*raw["models"], azure]})
    request = EmbeddingRequest(model="openai/text-embedding-3-small", input=["a"])
    every = {*EVERY, "azure"}
    both = decide_embedding(request=request, policy=policy, available=every)
    assert len(both.candidates) == 2
    only = decide_embedding(
        request=request, policy=policy, available=every, allowed_models=["openai/text-embedding-3-small"]
    )
    assert [c.model for c in only.candidates] == ["openai/text-embedding-3-small"]
    with pytest.raises(ModelNotAllowed):
        decide_embedding(
            request=request, policy=policy, available=every, allowed_models=["azure/text-embedding-3-small"]
        )


def test_a_task_without_the_field_is_read_as_before_and_the_field_is_left_out_when_unset() -> None:
    old = {
        "task_id": "t1",
        "tenant_id": "acme",
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    task = TaskSubmitted.model_validate(old)
    assert task.allowed_models is None
    assert "allowed_models" not in task.model_dump(mode="json", exclude_none=True)
    listed = TaskSubmitted.model_validate({**old, "allowed_models": ["auto", "cheap"]})
    assert listed.allowed_models == ["auto", "cheap"]
