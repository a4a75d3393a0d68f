"""Promoted heads swapped into a running classifier: checked against the encoder it runs, labelled with
the version that made each prediction; the pointer's history makes a rollback one write."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from switchyard.classifier import artifact, promotion
from switchyard.classifier.classify import Classifier
from switchyard.classifier.heads import Heads, Mlp

pytestmark = pytest.mark.unit
PROMPTS = ["Write a haiku about autumn rain.", "What is 17 * 23?", "Translate 'good morning' into German."]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load()


def tilted(heads: Heads, version: str, label: str = "chitchat") -> Heads:
    """The same heads with the type head's logit of `label` raised: other predictions, same shapes."""
    last = heads.type_head.biases[-1].copy()
    last[heads.labels.index(label)] += 40.0
    head = Mlp(heads.type_head.weights, (*heads.type_head.biases[:-1], last))
    return replace(heads, version=version, type_head=head)


def saved(heads: Heads, folder: Path, **manifest: object) -> Path:
    return artifact.save(folder, heads, {**heads.manifest, **manifest})


def test_swapped_heads_label_the_next_batch_and_say_so(classifier: Classifier, tmp_path: Path) -> None:
    before = classifier.predict(PROMPTS)
    new = promotion.read_folder(saved(tilted(classifier.heads, "heads-swap"), tmp_path / "new"))
    old_live = classifier.live
    try:
        classifier.live = classifier.prepare(artifact.from_bytes(new.manifest, new.weights))
        after = classifier.predict(PROMPTS)
    finally:
        classifier.live = old_live
    assert {p.model_version for p in before} == {old_live.model_version}
    swapped = "heads-swap+" + old_live.model_version.split("+", 1)[1]
    assert {p.model_version for p in after} == {swapped}
    assert [p.type for p in after] == ["chitchat"] * 3 != [p.type for p in before]
    assert classifier.predict(PROMPTS) == before  # swapped back: the old heads' bytes again


def test_heads_from_another_encoder_or_input_size_are_incompatible(
    classifier: Classifier, tmp_path: Path
) -> None:
    other_encoder = {**classifier.heads.manifest, "embedding_model_sha256": "0" * 64}
    with pytest.raises(artifact.IncompatibleHeads, match="trained on encoder 000000000000"):
        classifier.prepare(replace(classifier.heads, manifest=other_encoder))
    h = classifier.heads
    narrow = replace(h, mean=h.mean[:-5], std=h.std[:-5])
    with pytest.raises(artifact.IncompatibleHeads, match="read 402 inputs"):
        classifier.prepare(narrow)


def test_heads_trained_at_another_cap_read_prompts_at_it(classifier: Classifier) -> None:
    heads = classifier.heads
    at_64 = replace(heads, version="heads-64", manifest={**heads.manifest, "prompt_tokens": 64})
    live = classifier.prepare(at_64)
    assert live.embedder.tokenizer.max_tokens == 64 and live.model_version.startswith("heads-64+minilm-")
    assert classifier.embedder.tokenizer.max_tokens == heads.prompt_tokens  # the running one untouched
    long = " ".join(f"w{i}" for i in range(200))
    assert live.embedder.embed([long]).tokens == [64]


def test_corrupt_bytes_are_refused_before_anything_loads(tmp_path: Path) -> None:
    files = promotion.read_folder(None)
    damaged = bytearray(files.weights)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(artifact.ArtifactError, match="is corrupt: sha256"):
        artifact.from_bytes(files.manifest, bytes(damaged))
    with pytest.raises(artifact.ArtifactError, match="is corrupt"):
        artifact.from_bytes(b'{"version": "x"}', files.weights)


T0 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def ref(n: int) -> promotion.HeadsRef:
    return promotion.HeadsRef(
        version=f"heads-{n}", weights_sha256=f"{n:064x}", manifest_sha256=f"{n + 100:064x}"
    )


def test_promotions_keep_the_heads_before_them_and_rollback_walks_back() -> None:
    p = promotion.promoted_after(None, ref(1), at=T0, action="baseline")
    for n in range(2, 5):
        p = promotion.promoted_after(p, ref(n), at=T0 + timedelta(minutes=n))
    assert p.version == "heads-4" and [b.version for b in p.before] == ["heads-3", "heads-2", "heads-1"]
    back = promotion.rolled_back(p, at=T0)
    assert back.version == "heads-3" and back.action == "rollback" and back.note == "rolled back from heads-4"
    again = promotion.rolled_back(back, at=T0)
    assert again.version == "heads-2" and [b.version for b in again.before] == ["heads-1"]
    oldest = promotion.rolled_back(again, at=T0)
    with pytest.raises(promotion.NothingToRollBack, match="heads-1 is the oldest"):
        promotion.rolled_back(oldest, at=T0)
    with pytest.raises(promotion.NothingToRollBack, match="no classifier heads were promoted"):
        promotion.rolled_back(None, at=T0)


def test_the_history_is_bounded_and_a_repeated_promotion_does_not_fill_it() -> None:
    p = promotion.promoted_after(None, ref(0), at=T0)
    for n in range(1, 20):
        p = promotion.promoted_after(p, ref(n), at=T0)
    assert len(p.before) == promotion.KEEP and p.before[0].version == "heads-18"
    same = promotion.promoted_after(p, ref(19), at=T0)
    assert same.before == p.before


def test_an_unreadable_pointer_is_an_artifact_error() -> None:
    with pytest.raises(artifact.ArtifactError, match="pointer is unreadable"):
        promotion.parse(b'{"version": "heads-2"}')
    assert promotion.parse(None) is None
