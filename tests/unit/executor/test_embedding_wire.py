"""The embeddings wire of the OpenAI and Gemini adapters, without a server: request bodies, rows placed
by index, base64 and floats, the checks that make a reply `bad_response`, Gemini's batches and its
normalisation, and the usage read or estimated."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.base import EmbeddingCall
from switchyard.executor.providers.gemini import embeddings as gemini
from switchyard.executor.providers.openai import embeddings as openai

pytestmark = pytest.mark.unit

TEXTS = ("first text here", "second", "the third text")


def _vectors(count: int, dimensions: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((count, dimensions)).astype("<f4")


def _openai_reply(
    rows: np.ndarray, *, as_base64: bool, order: list[int] | None = None, **extra: Any
) -> bytes:
    def embedding(row: np.ndarray) -> Any:
        return base64.b64encode(row.tobytes()).decode() if as_base64 else row.tolist()

    order = order if order is not None else list(range(len(rows)))
    data = [{"object": "embedding", "index": i, "embedding": embedding(rows[i])} for i in order]
    return orjson.dumps({"object": "list", "data": data, "model": "text-embedding-3-small", **extra})


def _bad(parse: Any, *args: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        parse(*args)
    assert caught.value.kind == "bad_response" and caught.value.retryable
    return caught.value


def test_openai_itself_is_asked_for_base64_and_compatible_servers_for_floats() -> None:
    call = EmbeddingCall(model="text-embedding-3-small", inputs=TEXTS)
    assert openai.request_body(call, base64=True) == {
        "model": "text-embedding-3-small",
        "input": list(TEXTS),
        "encoding_format": "base64",
    }
    body = openai.request_body(EmbeddingCall(model="m", inputs=TEXTS, dimensions=256), base64=False)
    assert body["encoding_format"] == "float" and body["dimensions"] == 256


@pytest.mark.parametrize("as_base64", [True, False])
def test_openai_rows_are_placed_by_their_index_not_their_order(as_base64: bool) -> None:
    rows = _vectors(3, 8)
    raw = _openai_reply(
        rows, as_base64=as_base64, order=[2, 0, 1], usage={"prompt_tokens": 9, "total_tokens": 9}
    )
    reply = openai.parse_reply(raw, EmbeddingCall(model="asked", inputs=TEXTS))
    assert (reply.count, reply.dimensions, reply.model) == (3, 8, "text-embedding-3-small")
    assert reply.vectors == rows.tobytes()  # row i for input i, bit for bit
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 0


def test_openai_usage_is_estimated_when_the_server_reports_none() -> None:
    rows = _vectors(3, 4)
    call = EmbeddingCall(model="m", inputs=TEXTS)
    estimate = len("first text here") // 4 + 1 + len("the third text") // 4  # "second": at least one
    for extra in ({}, {"usage": None}, {"usage": {"prompt_tokens": 0, "total_tokens": 0}}):
        reply = openai.parse_reply(_openai_reply(rows, as_base64=False, **extra), call)
        assert reply.usage.prompt_tokens == estimate and reply.usage_estimated
    counted = {"usage": {"prompt_tokens": 9, "total_tokens": 9}}
    assert not openai.parse_reply(_openai_reply(rows, as_base64=False, **counted), call).usage_estimated
    assert (
        openai.parse_reply(
            orjson.dumps({"data": orjson.loads(_openai_reply(rows, as_base64=True))["data"]}), call
        ).model
        == "m"
    )


def _openai_with(data: list[Any]) -> bytes:
    return orjson.dumps({"object": "list", "data": data, "model": "m"})


def _row(index: Any, embedding: Any) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": embedding}


NAN = base64.b64encode(np.array([0.5, np.nan], dtype="<f4").tobytes()).decode()
INF = base64.b64encode(np.array([np.inf, 0.5], dtype="<f4").tobytes()).decode()


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([_row(0, [0.1, 0.2])], "2 inputs, 1 embeddings"),
        ([_row(0, [0.1, 0.2]), _row(1, [0.1, 0.2]), _row(2, [0.1, 0.2])], "2 inputs, 3 embeddings"),
        ([_row(0, [0.1, 0.2]), _row(0, [0.3, 0.4])], "no index of its own"),
        ([_row(0, [0.1, 0.2]), _row(2, [0.3, 0.4])], "no index of its own"),
        ([_row(0, [0.1, 0.2]), _row("1", [0.3, 0.4])], "no index of its own"),
        ([_row(0, [0.1, 0.2]), {"embedding": [0.3, 0.4]}], "no index of its own"),
        ([_row(0, [0.1, 0.2]), _row(1, None)], "not a list of numbers"),
        ([_row(0, [0.1, 0.2]), _row(1, [])], "not a list of numbers"),
        ([_row(0, [0.1, 0.2]), _row(1, [0.3, "0.4"])], "not a list of numbers"),
        ([_row(0, [0.1, 0.2]), _row(1, [0.3, None])], "not a list of numbers"),
        ([_row(0, [0.1, 0.2]), _row(1, [True, False])], "not a list of numbers"),
        ([_row(0, [0.1, 0.2]), _row(1, [[0.3], [0.4]])], "not a list of numbers"),
        ([_row(0, [0.1, 0.2]), _row(1, [0.3, 1e300])], "not finite"),
        ([_row(0, [0.1, 0.2]), _row(1, NAN)], "not finite"),
        ([_row(0, [0.1, 0.2]), _row(1, INF)], "not finite"),
        ([_row(0, [0.1, 0.2]), _row(1, "not base64!")], "not valid base64"),
        ([_row(0, [0.1, 0.2]), _row(1, base64.b64encode(b"abcde").decode())], "not float32"),
        ([_row(0, [0.1, 0.2]), _row(1, [0.3, 0.4, 0.5])], "different lengths"),
    ],
)
def test_an_openai_reply_with_a_wrong_count_or_a_malformed_row_is_a_bad_response(
    rows: list[Any], says: str
) -> None:
    error = _bad(openai.parse_reply, _openai_with(rows), EmbeddingCall(model="m", inputs=("a", "b")))
    assert says in error.message


@pytest.mark.parametrize(
    "raw", [b"<html>502</html>", b"[]", b'{"data": {}}', b'{"object": "list"}', b'{"data": null}']
)
def test_an_openai_reply_that_is_not_an_embeddings_list_is_a_bad_response(raw: bytes) -> None:
    _bad(openai.parse_reply, raw, EmbeddingCall(model="m", inputs=("a",)))


def test_an_openai_reply_of_another_length_than_asked_is_a_bad_response() -> None:
    raw = _openai_reply(_vectors(2, 8), as_base64=True)
    error = _bad(openai.parse_reply, raw, EmbeddingCall(model="m", inputs=("a", "b"), dimensions=4))
    assert "8 numbers; 4 were asked for" in error.message
    assert openai.parse_reply(raw, EmbeddingCall(model="m", inputs=("a", "b"), dimensions=8)).dimensions == 8


def test_gemini_batches_hold_at_most_100_requests_in_order() -> None:
    texts = tuple(f"text {i}" for i in range(250))
    parts = gemini.batches(texts)
    assert [len(p) for p in parts] == [100, 100, 50]
    assert [t for p in parts for t in p] == list(texts)
    assert [len(p) for p in gemini.batches(texts[:100])] == [100]
    assert gemini.batch_path("models/gemini-embedding-001", api_version="v1beta") == (
        "v1beta/models/gemini-embedding-001:batchEmbedContents"
    )


def test_gemini_requests_name_the_model_and_the_shorter_length_in_each_request() -> None:
    body = gemini.request_body("gemini-embedding-001", ["a", "b"], dimensions=768)
    assert body == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": 768,
            }
            for t in ("a", "b")
        ]
    }
    plain = gemini.request_body("models/gemini-embedding-001", ["a"], dimensions=None)
    assert plain["requests"] == [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}}
    ]


def _gemini_reply(rows: np.ndarray, **extra: Any) -> bytes:
    return orjson.dumps({"embeddings": [{"values": row.tolist()} for row in rows], **extra})


def test_gemini_vectors_shorter_than_3072_are_normalised_and_3072_ones_left_as_sent() -> None:
    call = EmbeddingCall(model="gemini-embedding-001", inputs=("a", "b"))
    short = _vectors(2, 768) * 0.3  # Google's shortened vectors: norms below one
    batch = gemini.parse_batch(_gemini_reply(short), call, call.inputs)
    for row, sent in zip(batch.rows, short, strict=True):
        assert np.linalg.norm(row.astype(np.float64)) == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(row, sent / np.linalg.norm(sent), atol=1e-6)  # the same direction
    native = _vectors(2, 3072) * 0.5
    batch = gemini.parse_batch(_gemini_reply(native), call, call.inputs)
    assert np.stack(batch.rows).tobytes() == native.tobytes()
    zero = gemini.parse_batch(_gemini_reply(np.zeros((2, 8), dtype="<f4")), call, call.inputs)
    assert not np.stack(zero.rows).any()  # a zero vector stays zero (no division by zero)


def test_gemini_usage_comes_from_usage_metadata_when_present_else_is_estimated() -> None:
    call = EmbeddingCall(model="gemini-embedding-001", inputs=("a" * 40, "b" * 8))
    rows = _vectors(2, 4)
    counted = gemini.parse_batch(
        _gemini_reply(rows, usageMetadata={"promptTokenCount": 17}), call, call.inputs
    )
    assert counted.usage.prompt_tokens == 17
    estimated = gemini.parse_batch(_gemini_reply(rows), call, call.inputs[1:2] + call.inputs[:1])
    assert estimated.usage.prompt_tokens == 2 + 10  # these texts' estimate, not the whole call's
    reply = gemini.joined(call, [counted, estimated])
    assert reply.usage.prompt_tokens == 29 and reply.count == 4 and reply.dimensions == 4
    assert reply.usage_estimated  # one batch's count is an estimate
    assert not gemini.joined(call, [counted]).usage_estimated


def test_gemini_batches_join_in_the_order_of_the_inputs() -> None:
    call = EmbeddingCall(model="gemini-embedding-001", inputs=("a", "b", "c"), dimensions=4)
    first = gemini.parse_batch(_gemini_reply(np.eye(4, dtype="<f4")[:2]), call, call.inputs[:2])
    second = gemini.parse_batch(_gemini_reply(np.eye(4, dtype="<f4")[2:3]), call, call.inputs[2:])
    reply = gemini.joined(call, [first, second])
    assert reply.vectors == np.eye(4, dtype="<f4")[:3].tobytes() and reply.model == "gemini-embedding-001"
    error = _bad(
        gemini.joined, EmbeddingCall(model="g", inputs=("a", "b", "c"), dimensions=8), [first, second]
    )
    assert "4 numbers; 8 were asked for" in error.message


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not valid JSON"),
        (b'{"embeddings": null}', "without embeddings"),
        (b'{"embedding": {"values": [0.1]}}', "without embeddings"),
        (b'{"embeddings": [{"values": [0.1, 0.2]}]}', "2 texts, 1 embeddings"),
        (b'{"embeddings": [{"values": [0.1, 0.2]}, {}]}', "not a list of numbers"),
        (b'{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.1, "x"]}]}', "not a list of numbers"),
        (b'{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.1, 1e300]}]}', "not finite"),
    ],
)
def test_a_gemini_reply_with_a_wrong_count_or_a_malformed_vector_is_a_bad_response(
    raw: bytes, says: str
) -> None:
    call = EmbeddingCall(model="gemini-embedding-001", inputs=("a", "b"))
    assert says in _bad(gemini.parse_batch, raw, call, call.inputs).message
