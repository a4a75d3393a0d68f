"""How the local embedding model groups a request's texts into ONNX Runtime runs: sorted by token length,
each run bounded in texts and padded tokens, every text in exactly one run."""

from __future__ import annotations

import random

from switchyard.executor.providers.local.embeddings import BATCH_TOKENS, MAX_BATCH, groups


def test_short_texts_share_runs_and_long_ones_run_alone() -> None:
    lengths = [200, 5, 40, 5, 256, 9, 70, 3]
    runs = groups(lengths, batch_tokens=128, max_batch=32)
    # 4 x 9 = 36 padded tokens; the 40-token text would make it 5 x 40 = 200, and two of 70 are 140
    assert runs == [[7, 1, 3, 5], [2], [6], [0], [4]]
    assert runs == groups(lengths)  # the defaults


def test_runs_are_bounded_and_cover_every_text_once() -> None:
    rng = random.Random(11)
    lengths = [rng.choice([3, 8, 17, 33, 64, 120, 256]) for _ in range(2048)]
    runs = groups(lengths)
    assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
    for run in runs:
        widest = max(lengths[i] for i in run)
        assert lengths[run[-1]] == widest  # the last is the longest: the run's width
        assert len(run) == 1 or (len(run) <= MAX_BATCH and len(run) * widest <= BATCH_TOKENS)
    assert [lengths[run[0]] for run in runs] == sorted(lengths[run[0]] for run in runs)
    assert len(groups([2] * 100, batch_tokens=10_000, max_batch=32)) == 4  # 32 + 32 + 32 + 4
    assert groups([5, 5, 5], batch_tokens=1) == [[0], [1], [2]]  # each alone: the old path
    assert groups([]) == []
