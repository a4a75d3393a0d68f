"""Any prompt gets a valid prediction: empty, huge, binary, non-English, code only."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from switchyard.classifier.classify import Classifier, classification, task_text
from switchyard.classifier.features import DIM, lexical
from switchyard.common.embedding import model_files
from switchyard.common.events import ChatRequest, TaskSubmitted
from switchyard.common.events.tasks import TASK_TYPES

pytestmark = pytest.mark.unit
ODD_PROMPTS = [
    "",
    " ",
    "\x00\x01\x02\x03" * 100,
    "bad \ud800 surrogate",
    "Quelle est la capitale de l'Australie ?",
    "東京で一番高い建物は何ですか",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "word " * 200_000,
    "🙂" * 1000,
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load()


def test_odd_prompts_classify_without_error(classifier: Classifier) -> None:
    preds = classifier.predict(ODD_PROMPTS)
    assert len(preds) == len(ODD_PROMPTS)
    for p in preds:
        assert p.type in TASK_TYPES and 0 <= p.confidence <= 1 and 0 <= p.complexity <= 1
        assert abs(sum(p.scores.values()) - 1) < 0.01
    assert preds[7].truncated and not preds[0].truncated


def test_the_service_reads_at_most_prompt_tokens_keeping_head_and_tail(classifier: Classifier) -> None:
    # the cap the heads were trained at (heads.json); the recorder and eval/predict use it by default
    cap = classifier.heads.prompt_tokens
    words = [f"w{i}" for i in range(400)]
    long, short = " ".join(words), " ".join(words[: cap // 4])
    emb = classifier.embedder.embed([long, short])
    assert emb.tokens == [cap, emb.tokens[1]] and emb.tokens[1] < cap
    assert emb.truncated == [True, False]
    preds = classifier.predict([long, short])
    assert preds[0].truncated and not preds[1].truncated


def test_an_operator_can_serve_at_a_lower_token_cap(
    classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    """`SWITCHYARD_CLASSIFIER_MAX_TOKENS`: the service reads fewer tokens, and its model version says so."""
    from switchyard.classifier.app import create
    from switchyard.classifier.config import ClassifierSettings

    settings = ClassifierSettings(classifier_max_tokens=32, metrics_port=0)
    assert ClassifierSettings().classifier_max_tokens is None  # None: the heads' own cap
    capped = Classifier.load(max_tokens=settings.classifier_max_tokens)
    prompt = " ".join(f"w{i}" for i in range(20))
    assert capped.embedder.embed([prompt]).tokens == [32]
    assert 32 < classifier.embedder.embed([prompt]).tokens[0] < classifier.heads.prompt_tokens
    pred = capped.predict([prompt])[0]
    assert pred.truncated and not classifier.predict([prompt])[0].truncated
    assert capped.model_version == classifier.model_version + "+t32"
    assert "+t" not in classifier.model_version
    with caplog.at_level(logging.INFO, logger="switchyard.classifier.app"):
        create(settings)  # the setting reaches the service's classifier
    assert f"classifier model {capped.model_version}" in caplog.text


def test_lexical_features_are_defined_for_any_text() -> None:
    for text in ODD_PROMPTS:
        assert lexical(text).shape == (DIM,)


def test_classification_uses_the_user_turns_and_metadata(classifier: Classifier) -> None:
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        priority="high",
        submitted_at=datetime.now(UTC),
        request=ChatRequest(
            messages=[
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Write a SQL query joining orders and users."},
            ]
        ),
    )
    assert task_text(task) == "Write a SQL query joining orders and users."
    pred = classifier.predict([task_text(task)])[0]
    c = classification(task, pred, model_version=classifier.model_version, latency_ms=1.5)
    assert c.urgency >= 0.75 and c.model_version == classifier.model_version and c.type == pred.type


def test_the_shipped_heads_were_trained_on_the_default_encoder(classifier: Classifier) -> None:
    """Changing `model_files.DEFAULT_PRECISION` (or the builder) without retraining the heads fails here."""
    files = model_files.find()
    assert classifier.heads.manifest["embedding_model_sha256"] == files.sha256(model_files.DEFAULT_PRECISION)


def test_an_encoder_the_heads_were_not_trained_on_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    other = next(p for p in model_files.PRECISIONS if p != model_files.DEFAULT_PRECISION)
    with caplog.at_level(logging.WARNING, logger="switchyard.classifier.classify"):
        loaded = Classifier.load(precision=other)
    assert f"not on {model_files.PRECISIONS[other]}" in caplog.text
    assert loaded.predict(["What is the capital of France?"])[0].type in TASK_TYPES
