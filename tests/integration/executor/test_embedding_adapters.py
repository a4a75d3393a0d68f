"""The OpenAI and Gemini adapters' `embed` against local servers speaking each provider's embeddings
protocol (`fake_embeddings.py`): the vectors in the order of the inputs, base64 and floats, shorter
vectors, Gemini's batches of 100 sent at once, and each failure mapped to the error taxonomy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from switchyard.cli.processes import free_port
from switchyard.common.errors import ProviderError
from switchyard.executor.providers.base import EmbeddingCall, EmbeddingProvider, EmbeddingReply
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from tests.support import fake_embeddings
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import FakeOpenAI, Recorded
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
TEXTS = ("The cat sat on the mat.", "A dog barked at the moon", "Zebras are striped")


@dataclass
class Upstream:
    name: str
    fake: FakeOpenAI | FakeGemini
    url: str

    def adapter(
        self, *, key: str | None = None, url: str | None = None, itself: bool | None = None
    ) -> GeminiProvider | OpenAIProvider:
        key = key or self.fake.api_key
        if self.name == "openai":
            settings = OpenAISettings(api_key=key, base_url=f"{url or self.url}/v1", itself=itself)
            return OpenAIProvider(settings, timeout_s=10)
        return GeminiProvider(GeminiSettings(api_key=key, base_url=url or self.url), timeout_s=10)

    def sent(self, model: str) -> list[Recorded]:
        """The embeddings requests for `model`, in the order they arrived."""
        return [
            r
            for r in self.fake.requests
            if (r.path == "/v1/embeddings" and r.body.get("model") == model)
            or r.path.endswith(f"/models/{model}:batchEmbedContents")
        ]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Upstream]]:
    openai, gemini = FakeOpenAI(), FakeGemini()
    with BackgroundServer(openai.app) as o, BackgroundServer(gemini.app) as g:
        yield {"openai": Upstream("openai", openai, o.url), "gemini": Upstream("gemini", gemini, g.url)}


@pytest.fixture(params=["openai", "gemini"])
def upstream(request: pytest.FixtureRequest, servers: dict[str, Upstream]) -> Upstream:
    return servers[request.param]


@pytest.fixture
async def adapter(upstream: Upstream) -> AsyncIterator[GeminiProvider | OpenAIProvider]:
    provider = upstream.adapter()
    yield provider
    await provider.aclose()


def rows(reply: EmbeddingReply) -> np.ndarray:
    assert len(reply.vectors) == reply.count * reply.dimensions * 4
    return np.frombuffer(reply.vectors, dtype="<f4").reshape(reply.count, reply.dimensions)


def expected(
    upstream: Upstream, model: str, texts: tuple[str, ...], dimensions: int | None = None
) -> np.ndarray:
    """What the server sent for each text, as the adapter should hand it on (Gemini's shortened vectors
    normalised)."""
    if upstream.name == "openai":
        return np.stack([fake_embeddings.openai_vector(model, t, dimensions) for t in texts])
    vectors = np.stack([fake_embeddings.gemini_vector(t, dimensions) for t in texts]).astype(np.float64)
    if dimensions is not None and dimensions < 3072:
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype("<f4")


async def test_the_adapters_are_embedding_providers(adapter: GeminiProvider | OpenAIProvider) -> None:
    assert isinstance(adapter, EmbeddingProvider)


async def test_each_input_gets_its_own_vector_in_the_order_of_the_inputs(
    upstream: Upstream, adapter: GeminiProvider | OpenAIProvider
) -> None:
    """The fake OpenAI lists its rows last first; the vectors still come back row i for input i, the
    model's own length, with the server's token count (a word a token: not the adapter's estimate)."""
    reply = await adapter.embed(EmbeddingCall(model="embed-a", inputs=TEXTS))
    assert reply.count == 3 and reply.model == "embed-a"
    assert reply.dimensions == (fake_embeddings.OTHER_DIMENSIONS if upstream.name == "openai" else 3072)
    assert rows(reply).tobytes() == expected(upstream, "embed-a", TEXTS).tobytes()  # bit for bit
    if upstream.name == "openai":
        assert reply.usage.prompt_tokens == sum(len(t.split()) for t in TEXTS)
    else:  # Gemini reports no tokens: estimated at four characters a token
        assert reply.usage.prompt_tokens == sum(len(t) // 4 for t in TEXTS)
    assert reply.usage.completion_tokens == 0


async def test_the_request_speaks_the_providers_protocol(
    upstream: Upstream, adapter: GeminiProvider | OpenAIProvider
) -> None:
    await adapter.embed(EmbeddingCall(model="embed-wire", inputs=TEXTS[:2], dimensions=16))
    [sent] = upstream.sent("embed-wire")
    if upstream.name == "openai":
        assert sent.path == "/v1/embeddings"
        assert sent.headers["authorization"] == f"Bearer {upstream.fake.api_key}"
        assert sent.body == {
            "model": "embed-wire",
            "input": list(TEXTS[:2]),
            "encoding_format": "float",
            "dimensions": 16,
        }
    else:
        assert sent.path == "/v1beta/models/embed-wire:batchEmbedContents"
        assert sent.headers["x-goog-api-key"] == upstream.fake.api_key
        assert sent.body == {
            "requests": [
                {
                    "model": "models/embed-wire",
                    "content": {"parts": [{"text": t}]},
                    "outputDimensionality": 16,
                }
                for t in TEXTS[:2]
            ]
        }


async def test_openai_itself_is_asked_for_base64_and_the_vectors_are_the_same(
    servers: dict[str, Upstream],
) -> None:
    """OPENAI_ITSELF (OpenAI behind a proxy): base64; a compatible server: floats. Both decode to the same
    numbers, and a server that answers floats to a base64 request is read as well."""
    upstream = servers["openai"]
    itself, compatible = upstream.adapter(itself=True), upstream.adapter()
    try:
        as_base64 = await itself.embed(EmbeddingCall(model="text-embedding-3-small", inputs=TEXTS))
        as_floats = await compatible.embed(EmbeddingCall(model="text-embedding-3-small", inputs=TEXTS))
        ignored = await itself.embed(EmbeddingCall(model="floats-only", inputs=TEXTS))
    finally:
        await itself.aclose()
        await compatible.aclose()
    first, second = upstream.sent("text-embedding-3-small")[-2:]
    assert first.body["encoding_format"] == "base64" and second.body["encoding_format"] == "float"
    assert as_base64.dimensions == 1536
    assert (
        as_base64.vectors
        == as_floats.vectors
        == expected(upstream, "text-embedding-3-small", TEXTS).tobytes()
    )
    assert upstream.sent("floats-only")[-1].body["encoding_format"] == "base64"
    assert ignored.vectors == expected(upstream, "floats-only", TEXTS).tobytes()


async def test_shorter_vectors_are_asked_for_and_come_back_at_unit_length(
    upstream: Upstream, adapter: GeminiProvider | OpenAIProvider
) -> None:
    """`dimensions` reaches the provider; OpenAI sends unit vectors, Google sends the first numbers of its
    3,072 (norm below one), which the adapter normalises."""
    model = "text-embedding-3-large" if upstream.name == "openai" else "gemini-embedding-001"
    reply = await adapter.embed(EmbeddingCall(model=model, inputs=TEXTS, dimensions=256))
    assert reply.dimensions == 256
    norms = np.linalg.norm(rows(reply).astype(np.float64), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6)
    assert np.allclose(rows(reply), expected(upstream, model, TEXTS, 256), atol=1e-6)
    if upstream.name == "gemini":  # what Google sent was not at unit length
        sent = np.stack([fake_embeddings.gemini_vector(t, 256) for t in TEXTS]).astype(np.float64)
        assert np.all(np.linalg.norm(sent, axis=1) < 0.5)


async def test_gemini_sends_250_inputs_as_three_batches_at_once_and_joins_them_in_order(
    servers: dict[str, Upstream],
) -> None:
    """Batches of 100, 100 and 50, all held by the server at once; the first waits longest (so it ends
    last), and the vectors still come back in the order of the inputs."""
    upstream = servers["gemini"]
    fake = upstream.fake
    assert isinstance(fake, FakeGemini)
    texts = tuple(f"passage number {i}: {'word ' * (i % 7)}" for i in range(250))
    adapter = upstream.adapter()
    try:
        began = time.monotonic()
        reply = await adapter.embed(
            EmbeddingCall(model="staggered-250", inputs=texts, dimensions=128, timeout_s=5)
        )
        took = time.monotonic() - began
    finally:
        await adapter.aclose()
    sent = upstream.sent("staggered-250")
    batches = sorted(
        ([q["content"]["parts"][0]["text"] for q in r.body["requests"]] for r in sent),
        key=lambda batch: texts.index(batch[0]),
    )  # in the order they arrived, which concurrent requests do not promise
    assert batches == [list(texts[:100]), list(texts[100:200]), list(texts[200:])]
    assert fake.most_in_flight["staggered-250"] == 3
    assert took < 0.3 + 0.15 + 0.1  # at once: about the longest wait, not the three waits' sum
    assert reply.count == 250 and reply.dimensions == 128
    assert np.allclose(rows(reply), expected(upstream, "staggered-250", texts, 128), atol=1e-6)


async def test_gemini_usage_sums_the_batches_usage_metadata_when_sent(servers: dict[str, Upstream]) -> None:
    texts = tuple(f"text {i} of many words" for i in range(150))
    adapter = servers["gemini"].adapter()
    try:
        reply = await adapter.embed(EmbeddingCall(model="counted", inputs=texts, dimensions=8))
    finally:
        await adapter.aclose()
    assert reply.usage.prompt_tokens == sum(len(t.split()) for t in texts)  # the server's count


async def test_a_failing_gemini_batch_fails_the_call(servers: dict[str, Upstream]) -> None:
    """flaky-1: the first batch to arrive gets 503; the call fails `overloaded` (its retry is the
    executor's), and the next call's batches all succeed."""
    texts = tuple(f"text {i}" for i in range(150))
    adapter = servers["gemini"].adapter()
    try:
        with pytest.raises(ProviderError) as caught:
            await adapter.embed(EmbeddingCall(model="flaky-1", inputs=texts, dimensions=8))
        assert caught.value.kind == "overloaded" and caught.value.retryable
        assert (await adapter.embed(EmbeddingCall(model="flaky-1", inputs=texts, dimensions=8))).count == 150
    finally:
        await adapter.aclose()


ERROR_SCENARIOS = [
    ("error-400", "bad_request", False),
    ("error-401", "auth", False),
    ("error-404", "bad_request", False),
    ("error-429", "rate_limited", True),
    ("error-500", "overloaded", True),
    ("error-503", "overloaded", True),
    ("garbage", "bad_response", True),
    ("break", "network", True),
]


@pytest.mark.parametrize(("model", "kind", "retryable"), ERROR_SCENARIOS)
async def test_errors_map_to_the_taxonomy(
    adapter: GeminiProvider | OpenAIProvider, model: str, kind: str, retryable: bool
) -> None:
    with pytest.raises(ProviderError) as caught:
        await adapter.embed(EmbeddingCall(model=model, inputs=TEXTS))
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)
    if kind == "rate_limited":
        assert caught.value.retry_after == 1.0


async def test_what_the_provider_refuses_is_a_bad_request_naming_its_reason(
    upstream: Upstream, adapter: GeminiProvider | OpenAIProvider
) -> None:
    """A length the model lacks: the provider's own 400, passed on as `bad_request` (not retried; another
    model may take it)."""
    with pytest.raises(ProviderError) as caught:
        await adapter.embed(EmbeddingCall(model="text-embedding-ada-002", inputs=TEXTS, dimensions=9999))
    assert caught.value.kind == "bad_request" and not caught.value.retryable
    assert "dimensions" in caught.value.message or "output_dimensionality" in caught.value.message


async def test_a_reply_missing_a_row_is_a_bad_response(servers: dict[str, Upstream]) -> None:
    adapter = servers["openai"].adapter()
    try:
        with pytest.raises(ProviderError) as caught:
            await adapter.embed(EmbeddingCall(model="short", inputs=TEXTS))
    finally:
        await adapter.aclose()
    assert caught.value.kind == "bad_response" and "3 inputs, 2 embeddings" in caught.value.message


async def test_a_server_without_usage_gets_an_estimate(servers: dict[str, Upstream]) -> None:
    adapter = servers["openai"].adapter()
    try:
        reply = await adapter.embed(EmbeddingCall(model="no-usage", inputs=TEXTS))
    finally:
        await adapter.aclose()
    assert reply.usage.prompt_tokens == sum(len(t) // 4 for t in TEXTS)


async def test_a_wrong_key_is_an_auth_error_and_the_key_is_not_in_the_message(upstream: Upstream) -> None:
    provider = upstream.adapter(key="sk-wrong-key-0123456789abcdef")
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.embed(EmbeddingCall(model="embed-a", inputs=TEXTS))
    finally:
        await provider.aclose()
    assert caught.value.kind == "auth" and "0123456789abcdef" not in caught.value.message


async def test_a_slow_reply_times_out_within_the_calls_time(adapter: GeminiProvider | OpenAIProvider) -> None:
    began = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await adapter.embed(EmbeddingCall(model="slow-3", inputs=TEXTS, timeout_s=0.3))
    assert caught.value.kind == "timeout" and time.monotonic() - began < 2


async def test_slow_gemini_batches_end_at_the_calls_time(servers: dict[str, Upstream]) -> None:
    """Each batch is bounded by the call's time, so three batches sent at once end with it."""
    fake = servers["gemini"].fake
    assert isinstance(fake, FakeGemini)
    adapter = servers["gemini"].adapter()
    texts = tuple(f"text {i}" for i in range(250))
    try:
        began = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            await adapter.embed(EmbeddingCall(model="slow-2", inputs=texts, dimensions=8, timeout_s=0.3))
        took = time.monotonic() - began
    finally:
        await adapter.aclose()
    assert caught.value.kind == "timeout" and took < 1.5
    assert fake.most_in_flight["slow-2"] == 3


def batches_running() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "_embed_batch" in getattr(t.get_coro(), "__qualname__", "")]


async def test_a_refused_gemini_batch_fails_the_call_and_stops_the_other_batches(
    servers: dict[str, Upstream],
) -> None:
    """The third batch holds an empty text, which Google refuses at once; the other two (slow) are
    cancelled, not left running after the call has failed."""
    texts = (*(f"text {i}" for i in range(249)), "")
    adapter = servers["gemini"].adapter()
    try:
        began = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            await adapter.embed(EmbeddingCall(model="slow-1.5", inputs=texts, dimensions=8, timeout_s=5))
        took = time.monotonic() - began
        assert batches_running() == []
    finally:
        await adapter.aclose()
    assert caught.value.kind == "bad_request" and "parts must not be empty" in caught.value.message
    assert took < 1.0


async def test_nobody_listening_is_a_network_error(upstream: Upstream) -> None:
    provider = upstream.adapter(url=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.embed(EmbeddingCall(model="embed-a", inputs=TEXTS))
    finally:
        await provider.aclose()
    assert caught.value.kind == "network" and caught.value.retryable
