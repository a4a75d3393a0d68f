"""A client's `prompt_cache_key` (OpenAI's grouping of requests that share a long prefix, for its prompt
cache) goes to OpenAI itself scoped to the task's tenant: one upstream organisation serves every tenant, so
two tenants' equal keys must not group their requests, and the key (often a user's id) does not leave."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import ProviderCall, cache_key_for
from switchyard.executor.providers.openai import responses as openai_responses
from switchyard.executor.providers.openai import wire as openai_wire
from switchyard.executor.providers.openai.models import rules_for

pytestmark = pytest.mark.unit


def _call(**kw: object) -> ProviderCall:
    return ProviderCall(model="gpt-6-sol", messages=(ChatMessage(role="user", content="Hi"),), **kw)  # type: ignore[arg-type]


def test_equal_keys_group_within_a_tenant_and_never_across_tenants() -> None:
    acme = cache_key_for("acme", "user-42")
    assert acme == cache_key_for("acme", "user-42")
    assert acme != cache_key_for("globex", "user-42") and acme != cache_key_for("acme", "user-43")
    assert acme is not None and "user-42" not in acme and "acme" not in acme and len(acme) == 35
    assert cache_key_for("acme", None) is None
    # the tenant and the key are not run together: ("ab", "c") and ("a", "bc") are different tenants' keys
    assert cache_key_for("ab", "c") != cache_key_for("a", "bc")


def test_openai_itself_is_sent_the_scoped_key_and_compatible_servers_nothing() -> None:
    key = cache_key_for("acme", "user-42")
    body = openai_wire.request_body(_call(cache_key=key), stream=False, openai_itself=True)
    assert body["prompt_cache_key"] == key
    assert "prompt_cache_key" not in openai_wire.request_body(
        _call(cache_key=key), stream=False, openai_itself=False
    )
    assert "prompt_cache_key" not in openai_wire.request_body(_call(), stream=True, openai_itself=True)
    rules = rules_for("gpt-6-sol")
    assert rules is not None
    assert (
        openai_responses.responses_body(_call(cache_key=key), stream=True, rules=rules)["prompt_cache_key"]
        == key
    )
    assert "prompt_cache_key" not in openai_responses.responses_body(_call(), stream=True, rules=rules)
