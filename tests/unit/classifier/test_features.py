"""The lexical features are part of the trained heads' contract: their values may not drift, and the fast
path for ASCII text must count exactly what the case-insensitive patterns count."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from switchyard.classifier import features, puzzles
from switchyard.classifier.features import lexical

pytestmark = pytest.mark.unit

SEED_PROMPTS = Path(__file__).resolve().parents[3] / "services/classifier/data/seed_prompts.jsonl"

# Values computed by the features as heads-1..4 were trained on (before the ASCII fast path), rounded.
GOLDEN: dict[str, str] = {
    "": " ".join(["0"] * 23),
    "What is the capital of France?": "0 0 0 0 0 0 0.40825 0 0 3.43399 1.94591 0 0 0 0 0.06667 0 0.2 1 0 0 0 "
    "0",
    "Write a Python function that RETURNS the SUM of an array; then explain it.\n```python\ndef f(x): "
    "return x\n```": "1.34164 0.22361 0.22361 0.22361 0 0 0 0 0.22361 4.68213 3.04452 1.38629 0 0.02804 0 "
    "0.11215 1 0 0 0 1 0 0.02804",
    "Résumé: SUMMARIZE the following passage in two sentences. \u0130stanbul, \u017fcript and KELVIN K — "
    "I'm sure?": "0.25 0 0 0.25 0.25 0.5 0 0.25 0 4.60517 2.83321 0 0 0 0.05051 0.19192 0 0.2 1 0 0 1 0",
    "(A) left (B) right\nWhich of the following must be true? If X = 3 then...": "0 0 1.54919 0 0 0 0.2582 0 "
    "0.2582 4.29046 2.77259 0.69315 0.01389 0.06944 0 0.06944 0 0.2 0 0.125 0 0 0.01389",
    "日本語のテキストを要約してください。": "0 0 0 0 0 0 0 0 0 2.94444 0.69315 0 0 0 1 0 0 0 0 0 0 0 0",
}


@pytest.mark.parametrize("text", list(GOLDEN))
def test_values_do_not_drift(text: str) -> None:
    np.testing.assert_allclose(lexical(text), np.asarray(GOLDEN[text].split(), dtype=np.float32), atol=1e-5)


def _case_insensitive(text: str) -> tuple[list[int], int, int]:
    """What the general path computes, spelled out: the IGNORECASE patterns, character by character."""
    return (
        [len(re.findall(p.pattern, text, re.IGNORECASE)) for _, p in features._CUES],
        sum(1 for ch in text if ord(ch) > 127),
        sum(1 for ch in text if ch.isupper()),
    )


def _ascii_texts() -> list[str]:
    rng = random.Random(5)
    words = [w for _, p in features._CUES for w in re.findall(r"[a-z][a-z ']+[a-z]", p.pattern)]
    glue = [
        " ",
        "  ",
        "\n",
        ", ",
        ". ",
        "? ",
        "_",
        "-",
        "'",
        "(",
        ") ",
        "x=",
        "Y =",
        ".png ",
        "c++ ",
        "tl;dr ",
    ]
    mixed = []
    for _ in range(1500):
        parts = [
            rng.choice(words) if rng.random() < 0.7 else rng.choice(glue) for _ in range(rng.randint(1, 40))
        ]
        text = "".join(p + rng.choice(glue) for p in parts)
        mixed.append("".join(ch.upper() if rng.random() < 0.3 else ch for ch in text))
    seeds = [json.loads(line)["prompt"] for line in SEED_PROMPTS.read_text(encoding="utf-8").splitlines()]
    generated = [puzzles.GENERATORS[i % len(puzzles.GENERATORS)](rng) for i in range(300)]
    return [t for t in mixed + seeds + generated if t.isascii()]


def test_ascii_fast_path_counts_what_the_case_insensitive_patterns_count() -> None:
    texts = _ascii_texts()
    assert len(texts) > 1800
    assert sum(sum(features._counts(t)[0]) for t in texts) > 10_000  # the texts do hit the cues
    for text in texts:
        assert features._counts(text) == _case_insensitive(text), text


def unicode_texts() -> list[str]:
    """ASCII cue-laden texts with characters that fold specially, or not at all, put in at random."""
    rng = random.Random(11)
    others = [
        "\u0130",
        "\u0131",
        "\u017f",
        "\u212a",
        "É",
        "ä",
        "Ω",
        "ß",
        "日本",
        "🙂",
        "\u0301",
        "\u00a0",
        "\udcff",
    ]
    texts = []
    for text in _ascii_texts()[:800]:
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(others))
        texts.append("".join(chars))
    return texts


def test_other_text_counts_what_the_case_insensitive_patterns_count() -> None:
    texts = unicode_texts()
    assert all(not t.isascii() for t in texts)
    assert sum(sum(features._counts(t)[0]) for t in texts) > 5_000
    for text in texts:
        assert features._counts(text) == _case_insensitive(text), text
    # the four folded letters do make cue words: "\u017fum" is "sum", "\u0130F" is "if", "\u212aey" is "key"
    assert features._counts("\u017fum")[0][1] == 1  # math_words
    assert features._counts("\u0130F")[0][2] == 1  # reason_words
