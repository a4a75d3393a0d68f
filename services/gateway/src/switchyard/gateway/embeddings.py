"""OpenAI's embeddings (`POST /v1/embeddings`): the request as the gateway accepts it, the task it becomes,
and the response its vectors make.

`input` is one text, a list of texts, one text as token ids or a list of them (cl100k ids, which LangChain's
OpenAIEmbeddings sends by default: decoded here, since the models behind the gateway have other
tokenizers). The vectors come back as OpenAI returns them: `embedding` a list of numbers, or with
`encoding_format: "base64"` (the OpenAI Python SDK's default) the base64 of each vector's little-endian
float32 bytes. Other fields OpenAI accepts (`user`) are accepted and ignored, as the chat face does.

The vectors come in the result event, or, when large, from the object store the executor put them in
(`vectors.py`): `EmbeddingResults` reads them there and deletes the object once the response is built, in the
background.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn, cast

import nats.errors
import numpy as np
import orjson
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from switchyard.common import tokens, vectors
from switchyard.common.background import Background
from switchyard.common.events import (
    EmbeddingRequest,
    EmbeddingResult,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    Usage,
)
from switchyard.common.events.tasks import MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS
from switchyard.common.ids import new_id
from switchyard.gateway import bodies, bounds, completions, key_policy, outcomes
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge, ServiceUnavailable, UpstreamFailed
from switchyard.gateway.tenants import Principal

EncodingFormat = Literal["float", "base64"]
MAX_DIMENSIONS = MAX_EMBEDDING_DIMENSIONS  # the task's bound (EmbeddingRequest.dimensions)
SHAPES = "a string, a list of strings, a list of token ids, or a list of lists of token ids"
# Task failures of an embedding task that are the client's doing: the request field to name (400
# `invalid_value`). The rest map as a chat task's do.
FAILURES = {"embedding_dimensions_unsupported": "dimensions", "embedding_result_too_large": "input"}
# The vectors were made (and billed) but could not be kept for delivery: the object store was full or the
# bus failed (503: another try may well pass).
UNAVAILABLE = "embedding_result_unavailable"
log = logging.getLogger(__name__)
Rows = np.ndarray[Any, np.dtype[np.float32]]

Text = Annotated[str, Field(min_length=1)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0, strict=True)]], Field(min_length=1)]


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request."""

    # Scalars are strict, as the chat face's are (`"dimensions": "256"` is a 400 `invalid_type`).
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200, description="an embedding model (GET /v1/models)")
    input: (
        Text
        | Annotated[list[Text], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    ) = Field(description=f"the texts to embed: {SHAPES} (cl100k); 1 to {MAX_EMBEDDING_INPUTS} inputs")
    encoding_format: EncodingFormat = Field(
        default="float", description="`float`: lists of numbers; `base64`: each vector's float32 bytes"
    )
    dimensions: int | None = Field(
        default=None, ge=1, le=MAX_DIMENSIONS, strict=True, description="shorter vectors, where the model can"
    )
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _shaped(cls, value: Any) -> Any:
        """Which shape `input` is, and what is wrong with it, said plainly (the union's own errors name
        each shape it tried)."""
        check_shape(value)
        return value


def _type_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("input_type", message)  # `_type`: 400 invalid_type


def _value_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("input_value", message)


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_shape(value: Any) -> None:
    if isinstance(value, str):
        if not value:
            raise _value_error("must not be an empty string")
        return
    if not isinstance(value, list):
        raise _type_error(f"must be {SHAPES}")
    if not value:
        raise _value_error(f"must not be empty: send 1 to {MAX_EMBEDDING_INPUTS} inputs")
    if len(value) > MAX_EMBEDDING_INPUTS and not _token_id(value[0]):  # before each is looked at
        raise _value_error(f"holds {len(value)} inputs; at most {MAX_EMBEDDING_INPUTS} per request")
    if all(_token_id(v) for v in value):
        if any(v < 0 for v in value):
            raise _value_error("token ids are integers from 0")
        return  # one input, as token ids
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise _value_error(f"holds {len(value)} inputs; at most {MAX_EMBEDDING_INPUTS} per request")
    if not all(isinstance(v, str) for v in value) and not all(isinstance(v, list) for v in value):
        raise _type_error(f"must be {SHAPES}, not a mix")
    for n, one in enumerate(value):
        if not one:
            raise _value_error(f"item {n} is empty")
        if isinstance(one, list) and not all(_token_id(t) and t >= 0 for t in one):
            raise _type_error(f"item {n} must be a list of token ids (integers from 0)")


@dataclass(frozen=True)
class Embeddings:
    """A valid request: the model, the texts (token ids decoded) and how the vectors are wanted."""

    model: str
    inputs: list[str]
    dimensions: int | None
    encoding_format: EncodingFormat


@bounds.reads
def parse_request(body: bytes, *, max_prompt_chars: int, max_text_bytes: int) -> Embeddings:
    """400 for a body that is not a valid request (as the chat face answers); 413 for an input longer than
    the gateway takes as one prompt (`max_prompt_chars`), or texts, decoded from token ids, larger than
    `max_text_bytes` (the body's limit: what a task carries on the bus stays bounded)."""
    raw = bodies.json_object(body)
    bounds.check_token_ids(raw.get("input"), param="input")
    parsed = bodies.validated(raw, EmbeddingsRequest, unsupported={})  # chat's fields: ignored
    texts, decoded = _texts(parsed.input)
    for n, text in enumerate(texts):
        if len(text) > max_prompt_chars:
            raise RequestTooLarge(
                f"Input item {n} has {len(text)} characters; the limit is {max_prompt_chars}",
                code="prompt_too_large",
                param="input",
            )
    if decoded:
        size = sum(len(text.encode()) for text in texts)
        if size > max_text_bytes:
            raise RequestTooLarge(
                f"The inputs' text, decoded from token ids, has {size} bytes; the limit is {max_text_bytes}",
                param="input",
            )
    return Embeddings(parsed.model, texts, parsed.dimensions, parsed.encoding_format)


def _texts(raw: str | list[str] | list[int] | list[list[int]]) -> tuple[list[str], bool]:
    """The inputs as texts, and whether they were token ids."""
    if isinstance(raw, str):
        return [raw], False
    if all(isinstance(one, str) for one in raw):
        return cast(list[str], raw), False
    if all(isinstance(one, int) for one in raw):
        return [_decoded(cast(list[int], raw), 0)], True
    return [_decoded(ids, n) for n, ids in enumerate(cast(list[list[int]], raw))], True


def _decoded(ids: list[int], n: int) -> str:
    try:
        return tokens.decode_ids(ids)
    except ValueError as exc:
        raise InvalidRequest(f"input item {n}: {exc}", code="invalid_value", param="input") from None


def build_task(parsed: Embeddings, principal: Principal, *, priority: str | None) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=new_id(),
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        allowed_models=key_policy.task_models(principal.key_policy),
        request=EmbeddingRequest(model=parsed.model, input=parsed.inputs, dimensions=parsed.dimensions),
        priority=completions.checked_priority(priority),
        origin="http",
        submitted_at=datetime.now(UTC),
    )


def raise_for_failure(failed: TaskFailed) -> NoReturn:
    """An embedding task's failure as the client's error: the length asked for, or too many vectors for
    one answer, name their field; the rest as a chat task's."""
    param = FAILURES.get(failed.error_code)
    if param is not None:
        raise InvalidRequest(failed.error_message, code="invalid_value", param=param)
    if failed.error_code == UNAVAILABLE:
        raise ServiceUnavailable(
            f"The vectors were made but could not be delivered ({failed.error_message}); try again shortly",
            code=UNAVAILABLE,
        )
    outcomes.raise_for_failure(failed)


class EmbeddingResults:
    """Reads an answer's vectors where the executor kept them (the result event, or the object store), and
    deletes a stored object once read, in the background: a response never waits for it, and what a
    failed delete leaves expires with the bucket's TTL."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._deleting = Background()

    async def rows(self, task: TaskSubmitted, done: TaskCompleted) -> Rows:
        """The answer's vectors, one row per input, checked against their digest and the inputs' count
        (502 `bad_response` otherwise: nothing the client could use)."""
        request = task.embedding()
        result = done.embedding
        assert request is not None
        if result is None or result.count != len(request.input):
            got = "no vectors" if result is None else f"{result.count} vectors"
            raise UpstreamFailed(
                f"The task answered {got} for {len(request.input)} inputs", code="bad_response"
            )
        try:
            raw = await vectors.fetch(self._js, result)
        except vectors.VectorsUnreadable as exc:  # our words: gone, or not the bytes the result names
            raise UpstreamFailed(f"The task's vectors are unreadable: {exc}", code="bad_response") from None
        except (ValueError, nats.errors.Error, TimeoutError) as exc:
            # a decoder's or the bus client's words (`Incorrect padding`, `nats: timeout`): to the log
            log.warning("task %s: its vectors could not be read: %r", task.task_id, exc)
            where = "decoded" if isinstance(exc, ValueError) else "read from the object store"
            raise UpstreamFailed(f"The task's vectors could not be {where}", code="bad_response") from None
        return np.frombuffer(raw, dtype="<f4").reshape(result.count, result.dimensions)

    def discard(self, done: TaskCompleted) -> None:
        """Deletes the answer's stored object, if it has one, without waiting."""
        if done.embedding is not None and done.embedding.object is not None:
            self._deleting.spawn(self._discard(done.embedding))

    async def _discard(self, result: EmbeddingResult) -> None:
        try:
            await vectors.discard(self._js, result)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not delete the stored vectors %s (they expire): %s", result.object, exc)

    async def drain(self) -> None:
        await self._deleting.drain()


def embeddings_json(rows: Rows, *, model: str, usage: Usage, encoding_format: EncodingFormat) -> bytes:
    """OpenAI's response: `data[i]` is input i's vector, as numbers (float32's shortest decimal, which reads
    back to the same float32) or as the base64 of its little-endian float32 bytes."""
    data: list[dict[str, Any]] = []
    for n, row in enumerate(rows):
        embedding: Any = row if encoding_format == "float" else base64.b64encode(row.tobytes()).decode()
        data.append({"object": "embedding", "index": n, "embedding": embedding})
    used = usage.prompt_tokens
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="numbers, or base64 of float32 bytes: `encoding_format`")


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    """The response (OpenAI's), for the OpenAPI document."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage
