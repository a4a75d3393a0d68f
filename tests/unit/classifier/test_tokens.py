from __future__ import annotations

import functools
import json
import random
import time
from pathlib import Path

import pytest

from switchyard.common.embedding import tokens
from switchyard.common.embedding.model_files import ModelFiles
from switchyard.common.embedding.tokens import PromptTokenizer, _clip

pytestmark = pytest.mark.unit
SEED_PROMPTS = Path(__file__).resolve().parents[3] / "services/classifier/data/seed_prompts.jsonl"


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


def _full(tok: PromptTokenizer, text: str) -> tuple[list[int], bool]:
    """The kept ids as tokenising the whole (clipped) prompt gives them: the reference for `_edges`."""
    clipped, cut = _clip(text)
    ids = tok._tok.encode(clipped, add_special_tokens=False).ids
    body = tok.max_tokens - 2
    head = round(body * 0.5)
    if len(ids) > body:
        return ids[:head] + ids[len(ids) - (body - head) :], True
    return ids, cut


@functools.cache
def _awkward_texts() -> list[str]:
    rng = random.Random(3)
    seeds = [json.loads(line)["prompt"] for line in SEED_PROMPTS.read_text(encoding="utf-8").splitlines()]
    pieces = [
        *seeds,
        "[CLS]",
        "[SEP][MASK]",
        "naïve café Ångström",
        " \u0301combining after a space",
        "日本語のテキスト",
        "tab\there",
        "crlf\r\nline",
        "nbsp\u00a0joined",
        "x" * 150,  # one word over WordPiece's 100 characters: [UNK]
        "🙂🙃",
        "\x00\x07 control",
        "don't-stop.now,ok?",
        "a.b,c;d:e!f?g(h)i[j]k{l}m",  # a token a character: a cut lands among the kept tokens
        "\n",
        " ",
    ]
    texts = []
    for _ in range(400):
        n = rng.choice([5, 20, 60, 120])
        glue = rng.choice(["", " ", "\n", "  "])
        texts.append(glue.join(rng.choice(pieces) for _ in range(n)))
    dense = pieces.index("a.b,c;d:e!f?g(h)i[j]k{l}m")
    texts += [" ".join(rng.choice(pieces[dense : dense + 3]) for _ in range(100)) for _ in range(50)]
    # Made-up words of one to three WordPiece tokens: cutting one in two changes its tokens.
    syllables = ["ka", "lo", "mi", "zu", "ren", "tor", "qua", "vex", "pli", "dor"]
    for _ in range(200):
        words = ("".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(rng.randint(200, 600)))
        texts.append(" ".join(words))
    texts += ["word " * 3000, "a" * 5000, "b" * 3000 + " end", "start " + "c" * 3000, "z " * 20_000]
    return texts


@pytest.mark.parametrize(("max_tokens", "chars_per_token"), [(48, 12), (256, 12), (16, 12), (48, 5), (48, 4)])
def test_long_prompts_tokenised_from_their_ends_match_the_full_tokenisation(
    model_files: ModelFiles, monkeypatch: pytest.MonkeyPatch, max_tokens: int, chars_per_token: int
) -> None:
    # With few characters a token the pieces hold barely the kept tokens, so a cut inside a word would show.
    monkeypatch.setattr(tokens, "PROBE_CHARS_PER_TOKEN", chars_per_token)
    tok = PromptTokenizer(model_files.tokenizer, max_tokens=max_tokens)
    texts = _awkward_texts()
    used = sum(tok._edges(_clip(t)[0]) is not None for t in texts)
    assert used > 40  # the ends path is exercised, not only the fallback
    for text in texts:
        batch = tok.encode([text])
        ids, cut = _full(tok, text)
        assert [int(i) for i in batch.input_ids[0][1:-1]] == ids, text[:80]
        assert batch.truncated == [cut]
