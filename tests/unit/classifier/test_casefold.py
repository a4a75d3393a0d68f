"""Folded text matched as is finds what IGNORECASE finds in the original (the cue features, urgency)."""

from __future__ import annotations

import re

import pytest

from switchyard.classifier import casefold, urgency

from .test_features import unicode_texts

pytestmark = pytest.mark.unit


def test_folding_turns_exactly_the_characters_an_ascii_letter_matches_into_that_letter() -> None:
    chars = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    assert len(casefold.fold(chars)) == len(chars)
    folded = [casefold.fold(ch) for ch in chars]
    assert all(len(f) == 1 for f in folded)
    # \w is isalnum() or "_", \s is isspace(), \d is isdecimal(): every character keeps its classes
    classes = (str.isalnum, str.isspace, str.isdecimal, "_".__eq__)
    assert all(
        tuple(c(ch) for c in classes) == tuple(c(f) for c in classes)
        for ch, f in zip(chars, folded, strict=True)
    )
    matching = {m.group() for m in re.finditer("[a-z]", chars, re.IGNORECASE)}
    assert {ch for ch, f in zip(chars, folded, strict=True) if "a" <= f <= "z"} == matching
    assert all(re.fullmatch(casefold.fold(ch), ch, re.IGNORECASE) for ch in matching)
    assert {ord(ch) for ch in matching if not ch.isascii()} == {0x130, 0x131, 0x17F, 0x212A}


def test_folding_keeps_length_and_word_class() -> None:
    for text in unicode_texts()[:200]:
        folded = casefold.fold(text)
        assert len(folded) == len(text)
        assert [bool(re.match(r"\w", c)) for c in folded] == [bool(re.match(r"\w", c)) for c in text]


def test_patterns_for_folded_text_must_be_lower_case() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        casefold.pattern(r"\bURGENT\b")
    with pytest.raises(ValueError, match="lower-case"):
        casefold.pattern(r"\S+")


@pytest.mark.parametrize(
    "phrase", ["URGENT", "As Soon As Possible", "prod is DOWN", "SEV 1", "No Rush", "take your time", "P0"]
)
def test_urgency_cues_match_as_case_insensitive_patterns_do(phrase: str) -> None:
    urgent = re.compile(urgency._URGENT.pattern, re.IGNORECASE)
    calm = re.compile(urgency._CALM.pattern, re.IGNORECASE)
    texts = [f"{t} {phrase}" for t in unicode_texts()[:150]] + [f"\u0130 {phrase} \u017f", phrase]
    for text in texts:
        expected = 1.0 if urgent.search(text) else -1.0 if calm.search(text) else 0.0
        assert urgency.content_cue(text) == expected, text
    assert urgency.content_cue(phrase) != 0.0
