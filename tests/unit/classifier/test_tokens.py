from __future__ import annotations

import time

import pytest

from switchyard.common.embedding.model_files import ModelFiles
from switchyard.common.embedding.tokens import PromptTokenizer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok(model_files: ModelFiles) -> PromptTokenizer:
    return PromptTokenizer(model_files.tokenizer)


def _words(tok: PromptTokenizer, ids: list[int]) -> list[str]:
    return [tok._tok.id_to_token(i) for i in ids]


def test_long_prompts_keep_head_and_tail(tok: PromptTokenizer) -> None:
    text = "alpha beta gamma " + "filler " * 2000 + "omega zeta final"
    batch = tok.encode([text])
    words = _words(tok, [int(i) for i in batch.input_ids[0]])
    assert batch.truncated == [True] and batch.lengths == [256] and len(words) == 256
    assert words[:4] == ["[CLS]", "alpha", "beta", "gamma"]
    assert words[-4:] == ["omega", "zeta", "final", "[SEP]"]


def test_short_prompts_are_whole_and_padded_in_a_batch(tok: PromptTokenizer) -> None:
    batch = tok.encode(["hello there", "a somewhat longer prompt than the first one"])
    assert batch.truncated == [False, False]
    assert batch.input_ids.shape == (2, max(batch.lengths))
    assert batch.attention_mask[0].sum() == batch.lengths[0] < batch.lengths[1]
    assert _words(tok, [int(i) for i in batch.input_ids[0][: batch.lengths[0]]]) == [
        "[CLS]",
        "hello",
        "there",
        "[SEP]",
    ]


def test_empty_binary_and_broken_unicode_are_encoded(tok: PromptTokenizer) -> None:
    batch = tok.encode(["", "\x00\x01\x02\x7f", "bad \ud800 surrogate", "日本語のテキスト"])
    assert batch.lengths[0] == 2 and all(n >= 2 for n in batch.lengths)


def test_a_ten_megabyte_prompt_is_cut_fast(tok: PromptTokenizer) -> None:
    started = time.perf_counter()
    batch = tok.encode(["x " * 5_000_000])
    assert batch.truncated == [True] and batch.lengths == [256]
    assert time.perf_counter() - started < 1.0
