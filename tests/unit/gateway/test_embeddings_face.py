"""The embeddings face as pure functions: what a body may hold and the error each mistake gets (the chat
face's shapes), token ids decoded with cl100k, the task it becomes, the response OpenAI's clients read
(numbers, or base64 the OpenAI Python SDK decodes), and the failures of an embedding task."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import cast

import numpy as np
import orjson
import pytest
from nats.js import JetStreamContext

from switchyard.common import vectors
from switchyard.common.events import EmbeddingRequest, TaskCompleted, TaskFailed, TaskSubmitted, Usage
from switchyard.common.tokens import encoding
from switchyard.gateway.embeddings import (
    EmbeddingResults,
    Embeddings,
    EncodingFormat,
    build_task,
    embeddings_json,
    parse_request,
    raise_for_failure,
)
from switchyard.gateway.errors import APIError, InvalidRequest, RequestTooLarge
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit
MODEL = "local/all-minilm-l6-v2"


def _parse(body: object, *, max_prompt_chars: int = 1000, max_text_bytes: int = 65536) -> Embeddings:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_request(raw, max_prompt_chars=max_prompt_chars, max_text_bytes=max_text_bytes)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"", "invalid_json", None),
        (b"[]", "invalid_json", None),
        ({"input": "hi"}, "missing_field", "model"),
        ({"model": MODEL}, "missing_field", "input"),
        ({"model": "", "input": "hi"}, "invalid_value", "model"),
        ({"model": MODEL, "input": ""}, "invalid_value", "input"),
        ({"model": MODEL, "input": []}, "invalid_value", "input"),
        ({"model": MODEL, "input": ["a", ""]}, "invalid_value", "input"),
        ({"model": MODEL, "input": [[1], []]}, "invalid_value", "input"),
        ({"model": MODEL, "input": ["x"] * 2049}, "invalid_value", "input"),
        ({"model": MODEL, "input": [[1]] * 2049}, "invalid_value", "input"),
        ({"model": MODEL, "input": 5}, "invalid_type", "input"),
        ({"model": MODEL, "input": {"text": "hi"}}, "invalid_type", "input"),
        ({"model": MODEL, "input": [1, "a"]}, "invalid_type", "input"),
        ({"model": MODEL, "input": ["a", ["b"]]}, "invalid_type", "input"),
        ({"model": MODEL, "input": [True]}, "invalid_type", "input"),
        ({"model": MODEL, "input": [[1.5]]}, "invalid_type", "input"),
        ({"model": MODEL, "input": [[-1]]}, "invalid_type", "input"),
        ({"model": MODEL, "input": [-1]}, "invalid_value", "input"),
        ({"model": MODEL, "input": [100256]}, "invalid_value", "input"),  # a hole in cl100k's ids
        ({"model": MODEL, "input": [[9906], [10**12]]}, "invalid_value", "input"),
        ({"model": MODEL, "input": "hi", "dimensions": "256"}, "invalid_type", "dimensions"),
        ({"model": MODEL, "input": "hi", "dimensions": 256.0}, "invalid_type", "dimensions"),
        ({"model": MODEL, "input": "hi", "dimensions": 0}, "invalid_value", "dimensions"),
        ({"model": MODEL, "input": "hi", "dimensions": 65537}, "invalid_value", "dimensions"),
        ({"model": MODEL, "input": "hi", "encoding_format": "int8"}, "invalid_value", "encoding_format"),
        ({"model": MODEL, "input": "hi", "user": 7}, "invalid_type", "user"),
    ],
)
def test_bad_bodies_get_the_chat_faces_errors(body: object, code: str, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(body)
    assert (err.value.status, err.value.code, err.value.param) == (400, code, param), err.value.message
    assert err.value.message


def test_every_shape_of_input_becomes_texts() -> None:
    ids = encoding().encode("Hello world")
    assert _parse({"model": MODEL, "input": "one"}).inputs == ["one"]
    assert _parse({"model": MODEL, "input": ["one", "two"]}).inputs == ["one", "two"]
    # a list of integers is ONE input as token ids; a list of lists, several (LangChain's default)
    assert _parse({"model": MODEL, "input": ids}).inputs == ["Hello world"]
    texts = ["The food was delicious.", "naïve café ☕", "  spaced  "]
    batch = _parse({"model": MODEL, "input": [encoding().encode(t) for t in texts]})
    assert batch.inputs == texts
    assert len(_parse({"model": MODEL, "input": ["x"] * 2048}).inputs) == 2048


def test_defaults_and_fields_that_change_nothing() -> None:
    # chat's fields that ask for what is not delivered mean nothing here (the chat face refuses them)
    ignored = {"user": "u-1", "extra_body": {"x": 1}, "store": True, "logprobs": True, "logit_bias": {"1": 5}}
    parsed = _parse({"model": MODEL, "input": "hi", **ignored})
    assert (parsed.model, parsed.encoding_format, parsed.dimensions) == (MODEL, "float", None)
    asked = _parse({"model": MODEL, "input": "hi", "encoding_format": "base64", "dimensions": 256})
    assert (asked.encoding_format, asked.dimensions) == ("base64", 256)


def test_an_input_too_long_and_token_ids_decoding_past_the_body_limit_are_413() -> None:
    with pytest.raises(RequestTooLarge) as long:
        _parse({"model": MODEL, "input": ["short", "y" * 11]}, max_prompt_chars=10)
    assert (long.value.status, long.value.code, long.value.param) == (413, "prompt_too_large", "input")
    assert "item 1" in long.value.message
    # ten inputs of ten characters: each within the limit (it holds per input, not per request)
    assert len(_parse({"model": MODEL, "input": ["z" * 10] * 10}, max_prompt_chars=10).inputs) == 10
    # a token id can stand for many characters: the decoded texts are held to the body's limit
    dashes = encoding().encode("-" * 64)
    assert len(dashes) < 8
    with pytest.raises(RequestTooLarge) as big:
        _parse({"model": MODEL, "input": [dashes] * 20}, max_text_bytes=1000)
    assert (big.value.status, big.value.code, big.value.param) == (413, "request_too_large", "input")
    assert _parse({"model": MODEL, "input": ["-" * 64] * 20}, max_text_bytes=1000).inputs  # text: as sent


def test_the_task_carries_the_texts_as_an_embedding_request() -> None:
    principal = Principal(tenant_id="t1", api_key_id="k1", user_id="u1", key_prefix="sy_x")
    parsed = _parse({"model": MODEL, "input": [encoding().encode("Hello"), [1917]], "dimensions": 384})
    task = build_task(parsed, principal, priority="high")
    assert task.embedding() == EmbeddingRequest(model=MODEL, input=["Hello", " world"], dimensions=384)
    assert (task.tenant_id, task.user_id, task.api_key_id, task.priority, task.origin) == (
        "t1",
        "u1",
        "k1",
        "high",
        "http",
    )
    wire = orjson.loads(task.model_dump_json())
    assert wire["request"]["kind"] == "embedding"
    assert TaskSubmitted.model_validate(wire).embedding() == task.embedding()
    with pytest.raises(InvalidRequest) as err:
        build_task(parsed, principal, priority="urgent")
    assert err.value.param == "x-switchyard-priority"


def _task(texts: list[str]) -> TaskSubmitted:
    return TaskSubmitted(
        task_id="t",
        tenant_id="t",
        request=EmbeddingRequest(model=MODEL, input=texts),
        submitted_at=datetime.now(UTC),
    )


def _done(rows: np.ndarray, **update: object) -> TaskCompleted:
    done = TaskCompleted(
        task_id="t",
        tenant_id="t",
        model=MODEL,
        provider="local",
        tier="local",
        content="",
        finish_reason="stop",
        usage=Usage(prompt_tokens=7, completion_tokens=0),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
        embedding=vectors.pack(rows.tobytes(), count=rows.shape[0], dimensions=rows.shape[1]),
    )
    return done.model_copy(update=update)


ROWS = np.random.default_rng(7).standard_normal((3, 5)).astype("<f4")
# Inline results only: reading them never touches the bus (stored ones: tests/integration/gateway).
RESULTS = EmbeddingResults(cast(JetStreamContext, None))


async def _json(task: TaskSubmitted, done: TaskCompleted, encoding_format: EncodingFormat) -> bytes:
    rows = await RESULTS.rows(task, done)
    return embeddings_json(rows, model=done.model, usage=done.usage, encoding_format=encoding_format)


async def test_floats_read_back_to_the_very_float32_numbers_in_input_order() -> None:
    body = orjson.loads(await _json(_task(["a", "b", "c"]), _done(ROWS), "float"))
    assert body["object"] == "list" and body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", i) for i in range(3)]
    got = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert got.tobytes() == ROWS.tobytes()  # exact: the shortest decimal of each float32


async def test_base64_is_what_the_openai_sdk_decodes() -> None:
    body = orjson.loads(await _json(_task(["a", "b", "c"]), _done(ROWS), "base64"))
    for n, item in enumerate(body["data"]):
        assert isinstance(item["embedding"], str)
        # openai-python: np.frombuffer(base64.b64decode(data), dtype="float32").tolist()
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="float32")
        assert decoded.tobytes() == ROWS[n].tobytes()


async def test_vectors_that_do_not_answer_the_inputs_are_a_502() -> None:
    task = _task(["a", "b"])
    cases = {
        "count": _done(ROWS),  # three vectors for two inputs
        "missing": _done(ROWS[:2], embedding=None),
        "digest": _done(ROWS[:2]).model_copy(
            update={"embedding": _done(ROWS[:2]).embedding.model_copy(update={"sha256": "0" * 64})}  # type: ignore[union-attr]
        ),
    }
    for name, done in cases.items():
        with pytest.raises(APIError) as err:
            await _json(task, done, "float")
        assert (err.value.status, err.value.code) == (502, "bad_response"), name


async def test_vectors_that_do_not_decode_say_so_in_our_words(caplog: pytest.LogCaptureFixture) -> None:
    done = _done(ROWS[:2])
    assert done.embedding is not None and done.embedding.data is not None
    garbled = done.embedding.model_copy(update={"data": "*" + done.embedding.data[1:]})
    with pytest.raises(APIError) as err:
        await _json(_task(["a", "b"]), done.model_copy(update={"embedding": garbled}), "float")
    assert (err.value.status, err.value.code) == (502, "bad_response")
    assert err.value.message == "The task's vectors could not be decoded"  # not the decoder's words
    assert "Only base64 data is allowed" in caplog.text  # binascii's words, for the operator


def _failed(code: str) -> TaskFailed:
    return TaskFailed(
        task_id="t",
        tenant_id="t",
        error_code=code,
        error_message=f"it failed: {code}",
        failed_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("code", "status", "client_code", "param"),
    [
        ("embedding_dimensions_unsupported", 400, "invalid_value", "dimensions"),
        ("embedding_result_too_large", 400, "invalid_value", "input"),
        ("embedding_result_unavailable", 503, "embedding_result_unavailable", None),
        ("model_lacks_capability", 400, "model_lacks_capability", "model"),
        ("model_not_found", 404, "model_not_found", "model"),
        ("provider_bad_request", 400, "provider_bad_request", None),
        ("no_provider_available", 503, "no_provider_available", None),
        ("provider_overloaded", 503, "provider_overloaded", None),
        ("provider_network", 502, "provider_network", None),
        ("bad_response", 502, "bad_response", None),
    ],
)
def test_an_embedding_tasks_failures_map_to_errors(
    code: str, status: int, client_code: str, param: str | None
) -> None:
    with pytest.raises(APIError) as err:
        raise_for_failure(_failed(code))
    assert (err.value.status, err.value.code, err.value.param) == (status, client_code, param)
    assert code in err.value.message
