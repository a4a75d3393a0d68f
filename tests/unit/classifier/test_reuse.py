"""Reused predictions: keyed by tenant and text, bounded, least recently used out."""

from __future__ import annotations

from switchyard.classifier.classify import Prediction
from switchyard.classifier.reuse import Predictions, key


def _prediction(label: str) -> Prediction:
    return Prediction(type=label, confidence=0.9, complexity=0.2, truncated=False, scores={label: 0.9})


def test_the_key_is_the_tenant_and_the_exact_text() -> None:
    assert key("acme", "Summarise this.") == key("acme", "Summarise this.")
    assert key("acme", "Summarise this.") != key("globex", "Summarise this.")
    assert key("acme", "Summarise this.") != key("acme", "Summarise this. ")
    # The tenant is length-prefixed: no tenant/text pair runs into another.
    assert key("ab", "c") != key("a", "bc")
    assert len(key("acme", "x" * 100_000)) == 16


def test_lone_surrogates_and_empty_texts_have_keys() -> None:
    assert key("acme", "\ud800 broken") != key("acme", "")


def test_a_prediction_is_found_only_by_its_own_key() -> None:
    cache = Predictions(8)
    cache.put(key("acme", "hi"), _prediction("chitchat"))
    assert cache.get(key("acme", "hi")) == _prediction("chitchat")
    assert cache.get(key("globex", "hi")) is None
    assert cache.get(key("acme", "hi!")) is None


def test_the_least_recently_used_goes_first() -> None:
    cache = Predictions(2)
    cache.put(b"a", _prediction("qa"))
    cache.put(b"b", _prediction("math"))
    assert cache.get(b"a") is not None  # now b is the least recently used
    cache.put(b"c", _prediction("coding"))
    assert len(cache) == 2
    assert cache.get(b"b") is None
    assert cache.get(b"a") == _prediction("qa") and cache.get(b"c") == _prediction("coding")


def test_size_zero_keeps_nothing() -> None:
    cache = Predictions(0)
    cache.put(b"a", _prediction("qa"))
    assert len(cache) == 0 and cache.get(b"a") is None
    assert cache.key("acme", "x" * 400_000) is None  # and hashes nothing


def test_the_map_keys_prompts_as_key_does() -> None:
    assert Predictions(8).key("acme", "hello") == key("acme", "hello")
