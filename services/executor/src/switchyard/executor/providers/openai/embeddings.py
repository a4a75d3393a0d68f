"""OpenAI's embeddings on the wire (`POST /embeddings`), for OpenAI itself and compatible servers.

OpenAI itself is asked for base64 (little-endian float32 bytes: a third of the float text, and nothing to
parse), as its own SDKs ask; compatible servers (vLLM, Ollama, llama.cpp, TEI, LiteLLM) for floats, which
all of them return, while not all take base64. Rows are placed by their `index`: the API does not promise
their order.
"""

from __future__ import annotations

from typing import Any

from switchyard.executor.providers.base import EmbeddingCall, EmbeddingReply, estimated_embedding_usage
from switchyard.executor.providers.embedding_rows import Row, from_base64, from_list, stacked
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.http import parse_json
from switchyard.executor.providers.openai.wire import usage_of

PATH = "embeddings"


def request_body(call: EmbeddingCall, *, base64: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": call.model,
        "input": list(call.inputs),
        "encoding_format": "base64" if base64 else "float",
    }
    if call.dimensions is not None:
        body["dimensions"] = call.dimensions
    return body


def parse_reply(raw: bytes, call: EmbeddingCall) -> EmbeddingReply:
    """`{"data": [{"index", "embedding"}], "model", "usage": {"prompt_tokens"}}`: one row per input,
    each index once; the embedding a list of numbers or a base64 string (whichever was sent back: a
    compatible server may answer floats to a base64 request). A server that reports no usage (or none
    of it) gets an estimate."""
    data = parse_json(raw, what="the embeddings reply")
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise provider_error("bad_response", f"embeddings reply without data: {raw[:200]!r}")
    count = len(call.inputs)
    if len(rows) != count:
        raise provider_error("bad_response", f"{count} inputs, {len(rows)} embeddings returned")
    placed: list[Row | None] = [None] * count
    for position, item in enumerate(rows):
        index = item.get("index") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < count or placed[index] is not None:
            raise provider_error("bad_response", f"data[{position}] has no index of its own: {index!r}")
        embedding = item.get("embedding")
        where = f"data[{position}].embedding"
        placed[index] = (
            from_base64(embedding, where=where)
            if isinstance(embedding, str)
            else from_list(embedding, where=where)
        )
    vectors, dimensions = stacked([row for row in placed if row is not None], dimensions=call.dimensions)
    usage = usage_of(data.get("usage"))
    counted = usage is not None and usage.prompt_tokens > 0
    return EmbeddingReply(
        vectors=vectors,
        count=count,
        dimensions=dimensions,
        model=str(data.get("model") or call.model),
        usage=usage if usage is not None and counted else estimated_embedding_usage(call),
        usage_estimated=not counted,
    )
