"""The local embedding model on the real files (all-MiniLM-L6-v2, fp32 ONNX, one thread): its vectors are
sentence-transformers' own, and it refuses, unsent, work it could not finish within a call's timeout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.providers.anthropic import AnthropicSettings
from switchyard.executor.providers.base import EmbeddingCall, EmbeddingReply
from switchyard.executor.providers.local import (
    LocalEmbeddings,
    LocalModelConfig,
    LocalProvider,
    default_model_path,
    files_loader,
)
from switchyard.executor.providers.openai import OpenAISettings
from switchyard.executor.registry import build_providers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# Vectors computed once with PyTorch + transformers (tests/unit/classifier/generate_reference.py): mean
# pooling, L2 norm, at most 256 tokens cut at the end, as sentence-transformers runs this model.
REFERENCE = json.loads(
    (ROOT / "unit" / "classifier" / "reference_embeddings.json").read_text(encoding="utf-8")
)
MODEL = "all-MiniLM-L6-v2"


def ask(texts: list[str], *, timeout_s: float | None = 60, dimensions: int | None = None) -> EmbeddingCall:
    return EmbeddingCall(model=MODEL, inputs=tuple(texts), dimensions=dimensions, timeout_s=timeout_s)


def rows(reply: EmbeddingReply) -> np.ndarray:
    return np.frombuffer(reply.vectors, dtype="<f4").reshape(reply.count, reply.dimensions)


@pytest.fixture
async def local() -> AsyncIterator[LocalEmbeddings]:
    embeddings = LocalEmbeddings(files_loader(None, build=True))
    yield embeddings
    await embeddings.aclose()


async def test_the_vectors_are_sentence_transformers_own(local: LocalEmbeddings) -> None:
    sentences = REFERENCE["sentences"]
    assert max(s["tokens"] for s in sentences) == 256  # one is cut: the head is kept, as the reference cut it
    reply = await local.embed(ask([s["text"] for s in sentences]))
    assert (reply.count, reply.dimensions, reply.model) == (len(sentences), 384, MODEL)
    ours = rows(reply)
    reference = np.array([s["embedding"] for s in sentences], dtype=np.float32)
    cosines = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosines.min() >= 0.9999, cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # usage: the word pieces read, [CLS] and [SEP] included, as the reference counted them
    assert reply.usage.prompt_tokens == sum(s["tokens"] for s in sentences)
    assert reply.usage.completion_tokens == 0


async def test_a_vector_does_not_depend_on_the_texts_beside_it(local: LocalEmbeddings) -> None:
    """Beyond float rounding: a short text shares its ONNX Runtime run with others, padded."""
    alone = rows(await local.embed(ask(["tea or coffee?"])))
    texts = ["a long text about databases " * 20, "tea or coffee?", "", "hi"]
    together = await local.embed(ask(texts))
    assert np.allclose(alone[0], rows(together)[1], rtol=0, atol=1e-6)
    assert (await local.embed(ask(texts))).vectors == together.vectors  # the same request, the same bytes


def _mixed_texts() -> list[str]:
    """Texts of every length in a shuffled order: queries of a few word pieces, sentences, paragraphs,
    texts cut at 256 word pieces, and the empty text ([CLS] [SEP] only)."""
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8").split("\n\n")
    rng = np.random.default_rng(5)
    texts = [s["text"] for s in REFERENCE["sentences"]]
    texts += [
        " ".join(rng.choice(["tea", "naïve", "café", "数据", "rows", "index"], size=n)) for n in range(1, 40)
    ]
    texts += [p for p in readme if 40 < len(p) < 3000][:60]
    texts += ["The quick brown fox jumps over the lazy dog. " * 80, "word " * 300, "", "😀"]
    return [texts[i] for i in rng.permutation(len(texts))]


async def test_grouped_runs_give_each_texts_own_vector_in_its_place(local: LocalEmbeddings) -> None:
    """The texts of a request share runs by length; each vector equals that text's run alone (the path
    before grouping: `batch_tokens=1`), in the request's order, with the same word pieces counted."""
    texts = _mixed_texts()
    alone = LocalEmbeddings(files_loader(None, build=True), batch_tokens=1)
    try:
        single = [await alone.embed(ask([text])) for text in texts]
    finally:
        await alone.aclose()
    reply = await local.embed(ask(texts))
    ours = rows(reply)
    expected = np.concatenate([rows(r) for r in single])
    assert reply.count == len(texts) and ours.shape == expected.shape
    cosines = (ours * expected).sum(1)  # both unit length
    assert cosines.min() >= 0.99999, cosines.argmin()
    assert np.abs(ours - expected).max() < 1e-6
    assert reply.usage.prompt_tokens == sum(r.usage.prompt_tokens for r in single)
    counts = [r.usage.prompt_tokens for r in single]
    assert max(counts) == 256 and min(counts) == 2  # cut texts and the empty one were among them
    # reversed, the same vectors come back reversed
    backwards = rows(await local.embed(ask(texts[::-1])))
    assert np.abs(backwards[::-1] - ours).max() < 1e-6


async def test_work_that_cannot_finish_within_the_timeout_is_refused_unsent(local: LocalEmbeddings) -> None:
    await local.embed(ask(["warm up"]))  # loaded
    texts = ["word " * 300] * 64  # 64 texts of 256 tokens: over a second of work here
    started = time.perf_counter()
    with pytest.raises(ProviderError) as alone:
        await local.embed(ask(texts, timeout_s=0.05))
    assert time.perf_counter() - started < 0.05  # refused before any of it ran
    error = alone.value
    assert (error.kind, error.sent, error.retryable) == ("overloaded", False, False)
    assert "send fewer or shorter texts" in error.message

    # Behind a request that fills the thread, a request that alone would fit is refused, with the wait.
    ahead = asyncio.ensure_future(local.embed(ask(texts)))
    await asyncio.sleep(0.01)
    own_s = local.token_s * 40
    with pytest.raises(ProviderError) as queued:
        await local.embed(ask(["a short one"], timeout_s=max(own_s * 2, 0.05)))
    error = queued.value
    assert (error.kind, error.sent, error.retryable) == ("overloaded", False, True)
    assert error.retry_after is not None and error.retry_after > 0.5
    assert (await ahead).count == 64  # the one ahead was not disturbed
    patient = await local.embed(ask(["a short one"], timeout_s=60))
    assert patient.count == 1


async def test_a_caller_that_leaves_frees_the_thread_before_the_next_text(local: LocalEmbeddings) -> None:
    await local.embed(ask(["warm up"]))
    local.token_s = 1e-9  # it believes the work fits, and starts it
    texts = ["word " * 300] * 400  # ~20 s of work
    started = time.perf_counter()
    with pytest.raises(ProviderError) as timed_out:
        await local.embed(ask(texts, timeout_s=0.3))
    assert timed_out.value.kind == "timeout"
    left = asyncio.ensure_future(local.embed(ask(texts)))
    await asyncio.sleep(0.3)
    left.cancel()
    with pytest.raises(asyncio.CancelledError):
        await left
    next_one = await local.embed(ask(["tea or coffee?"], timeout_s=5))
    assert next_one.count == 1 and time.perf_counter() - started < 3  # neither ran to its end


async def test_another_model_or_length_is_refused_unsent(local: LocalEmbeddings) -> None:
    for call in (
        EmbeddingCall(model="text-embedding-3-small", inputs=("hi",)),
        ask(["hi"], dimensions=256),
    ):
        with pytest.raises(ProviderError) as refused:
            await local.embed(call)
        assert (refused.value.kind, refused.value.sent) == ("bad_request", False)
    assert (await local.embed(ask(["hi"], dimensions=384))).dimensions == 384
    assert (
        await local.embed(EmbeddingCall(model="sentence-transformers/all-minilm-l6-v2", inputs=("hi",)))
    ).count == 1


async def test_missing_model_files_fail_the_calls_unsent_not_the_service(tmp_path: Path) -> None:
    embeddings = LocalEmbeddings(files_loader(tmp_path / "nothing-built", build=False))
    try:
        for _ in range(2):  # the failed load is kept, not tried again per call
            with pytest.raises(ProviderError) as refused:
                await embeddings.embed(ask(["hi"]))
            assert (refused.value.kind, refused.value.sent) == ("bad_request", False)
            assert "not available" in refused.value.message
    finally:
        await embeddings.aclose()


async def test_the_local_provider_serves_embeddings_when_the_executor_has_them() -> None:
    path = default_model_path()
    assert path is not None
    without = LocalProvider(LocalModelConfig(model_path=path))
    with pytest.raises(ProviderError) as refused:
        await without.embed(ask(["hi"]))
    assert (refused.value.kind, refused.value.sent) == ("bad_request", False)

    keys = dict(openai=OpenAISettings(api_key=None), anthropic=AnthropicSettings(api_key=None))
    found = build_providers(ExecutorSettings(), **keys)
    try:
        provider = found.providers["local"]
        assert isinstance(provider, LocalProvider) and provider.embeddings is not None
        reply = await provider.embed(ask(["tea or coffee?"]))
        assert (reply.count, reply.dimensions) == (1, 384)
    finally:
        await found.aclose()
    off = build_providers(ExecutorSettings(local_embeddings=False), **keys)
    local = off.providers["local"]
    assert isinstance(local, LocalProvider) and local.embeddings is None
    await off.aclose()


def test_long_texts_are_cut_where_sentence_transformers_cuts_them() -> None:
    """Head-only truncation reads long texts from their beginning only, in growing pieces cut at
    whitespace; the word pieces kept are those of the whole text cut at 256 by the tokenizer itself,
    for texts whose head holds few word pieces too (long runs of whitespace, words longer than WordPiece
    reads)."""
    from tokenizers import Tokenizer

    from switchyard.common.embedding import model_files
    from switchyard.common.embedding.tokens import PromptTokenizer

    files = model_files.ensure_built()[0]
    reference = Tokenizer.from_file(str(files.tokenizer))
    reference.no_padding()
    reference.enable_truncation(256)
    ours = PromptTokenizer(files.tokenizer, head_share=1.0)
    texts = [
        "",
        "short",
        "The quick brown fox jumps over the lazy dog. " * 2000,
        "naïve café 数据 😀 don't co-operate\n" * 3000,
        " " * 40_000 + "the words come late " * 100,
        ("x" * 150 + " ") * 500 + "then real words " * 400,
        "a" * 50_000,
    ]
    batch = ours.encode(texts)
    for i, text in enumerate(texts):
        assert list(batch.input_ids[i, : batch.lengths[i]]) == reference.encode(text).ids, text[:40]
    assert batch.truncated == [False, False, True, True, True, True, False]
