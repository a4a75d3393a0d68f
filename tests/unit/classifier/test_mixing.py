"""Rows written for training from training-split rows: open questions, coding requests."""

from __future__ import annotations

import pytest

from switchyard.classifier import mixing, training
from switchyard.classifier.dataset import Example, is_heldout
from switchyard.common.events.tasks import TASK_TYPES

pytestmark = pytest.mark.unit


def _mc(i: int, stem: str, label: str = "qa", source: str = "mmlu_routellm") -> Example:
    prompt = f"{stem}\nA. one\nB. two\nC. three\nD. four\nAnswer:"
    return Example(id=f"r{i}", source=source, prompt=prompt, label=label, native_label=f"subject_{i % 3}")


def test_open_questions_drop_the_options_and_keep_the_label() -> None:
    rows = [_mc(i, f"What is the capital of country number {i}?") for i in range(20)]
    rows += [_mc(100 + i, f"How many apples are left if I eat {i} of them?", "math") for i in range(20)]
    rows.append(_mc(200, "Which of the following is a prime number?"))  # needs its options: left out
    rows.append(_mc(201, "A capital city question from a held-out source?", source="t0_cbqa"))
    a = mixing.open_questions(rows, per_label=15, seed=3)
    assert [e.prompt for e in a] == [e.prompt for e in mixing.open_questions(rows, per_label=15, seed=3)]
    assert {e.label for e in a} == {"qa", "math"} and len(a) == 30
    assert all("Answer:" not in e.prompt and "\nA." not in e.prompt for e in a)
    assert not any("following" in e.prompt or "held-out" in e.prompt for e in a)
    assert all(e.source == mixing.OPEN_QUESTION_SOURCE and e.native_label.startswith("open/") for e in a)
    math_stems = {r.prompt.split("\n")[0] for r in rows if r.label == "math"}
    assert all(any(s in e.prompt for s in math_stems) for e in a if e.label == "math")


def test_coding_requests_rephrase_mbpp_tasks_without_the_template() -> None:
    rows = [
        Example(
            id=f"m{i}",
            source="mbpp_plus",
            prompt=f"Write a function to reverse list number {i}. https://example.com/x. Your code should "
            f"satisfy the following assertion:\n```python\nassert rev_{i}([1, 2]) == [2, 1]\n```",
            label="coding",
            native_label="mbpp",
        )
        for i in range(30)
    ]
    a = mixing.coding_requests(rows, count=40, seed=5)
    assert len(a) == 30 and {e.label for e in a} == {"coding"}
    assert not any("Your code should" in e.prompt or "https://" in e.prompt for e in a)
    assert all("reverse list number" in e.prompt for e in a)
    assert [e.prompt for e in a] == [e.prompt for e in mixing.coding_requests(rows, count=40, seed=5)]


def test_the_multilingual_requests_cover_every_label_in_every_language_and_none_is_held_out() -> None:
    rows = mixing.load_multilingual()
    languages = {e.native_label for e in rows}
    assert len(languages) >= 14 and "en" not in languages
    for lang in languages:
        labels = [e.label for e in rows if e.native_label == lang]
        assert sorted(set(labels)) == sorted(TASK_TYPES), lang
        assert min(labels.count(t) for t in TASK_TYPES) >= 5, lang
    assert len({e.id for e in rows}) == len(rows) == len({e.prompt for e in rows})
    assert all(e.source == mixing.MULTILINGUAL_SOURCE and not is_heldout(e) for e in rows)
    # written in the language's own script (code and technical terms may be in Latin letters)
    script = {"zh": (0x4E00, 0x9FFF), "ru": (0x0400, 0x04FF), "uk": (0x0400, 0x04FF), "ar": (0x0600, 0x06FF),
              "ko": (0xAC00, 0xD7AF), "hi": (0x0900, 0x097F), "ja": (0x3040, 0x9FFF)}  # fmt: skip
    for e in rows:
        if e.native_label in script:
            lo, hi = script[e.native_label]
            assert sum(lo <= ord(c) <= hi for c in e.prompt) >= 2, e.id


def test_the_natural_requests_cover_every_label_and_none_is_held_out() -> None:
    rows = mixing.load_natural()
    labels = [e.label for e in rows]
    assert sorted(set(labels)) == sorted(TASK_TYPES)
    assert min(labels.count(t) for t in TASK_TYPES) >= 40
    assert len({e.id for e in rows}) == len(rows) == len({e.prompt for e in rows})
    assert all(e.source == mixing.NATURAL_SOURCE and not is_heldout(e) for e in rows)
    # a document task carries its document
    assert min(len(e.prompt) for e in rows if e.label in ("summarisation", "extraction")) >= 80


def test_a_run_mixes_the_natural_requests_in_only_when_asked() -> None:
    natural = {e.id for e in mixing.load_natural()}
    assert not natural & {e.id for e in training.mixed_in([], training.TrainingRun())}
    assert natural <= {e.id for e in training.mixed_in([], training.TrainingRun(natural=True))}
