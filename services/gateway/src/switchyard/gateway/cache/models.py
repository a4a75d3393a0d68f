"""The response cache's pure parts: what a request's keys are, which kinds of cache it may use, and what
is stored. No I/O here (the stores are in `exact.py` and `backends.py`, the orchestration in `service.py`).

Exact key: tenant + SHA-256 of the normalised request: every field of the chat request that can change the
answer (model, messages, max_tokens, temperature, top_p, stop, response_format, tools, seed, ...), never
`stream`, the request id, the user agent, the `user` field or `prompt_cache_key` (a turn's images and
documents are hashed whole). Semantic scope: the same, minus the text of the conversation's user turns, which
is embedded instead (their images and documents stay in the scope: two prompts of the same text about
different PDFs never share an answer), plus what of that text the embedding barely sees (`guard.literals`: its
numbers, negations, days, opposite words, comparisons and conversions' directions: "17*23" and "17*24", "safe"
and "not safe", "older" and "younger", "miles to km" and "km into miles"); a neighbour must share the tenant
and the scope, and the neighbour's prompt must not be the same words in another order (`guard.reordered`).

Embedding key (`POST /v1/embeddings`, exact only): tenant + SHA-256 of a version tag, "embedding", the model,
`dimensions` and the texts exactly as they are sent (token ids decoded, guardrails' redactions made): nothing
is normalised, since any change to a text changes its vector. Its hashed object has other fields than a chat
key's, and it is stored under another prefix (`exact.py`), so the two never meet.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from switchyard.common.events import ChatRequest, EmbeddingRequest, EmbeddingResult, Usage
from switchyard.gateway.cache.guard import literals
from switchyard.gateway.errors import InvalidRequest

CACHE_HEADER = "x-switchyard-cache"
DIRECTIVES = ("no-cache", "no-store")
Kind = Literal["exact", "semantic"]
# Part of every embedding key: changing what the key covers changes the tag, and old entries are not found.
EMBEDDING_KEY_VERSION = "embedding-key-v1"


class CacheRule(BaseModel):
    """Overrides for a plan or a tenant; fields left unset keep the value from the level above."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    semantic: bool | None = None
    ttl_s: float | None = Field(default=None, gt=0)
    threshold: float | None = Field(default=None, gt=0, le=1)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The cache settings in force for one tenant."""

    enabled: bool
    semantic: bool
    ttl_s: float
    threshold: float
    semantic_multi_turn: bool = False
    semantic_tools: bool = False

    def apply(self, rule: CacheRule | None) -> CacheConfig:
        if rule is None:
            return self
        return CacheConfig(
            enabled=self.enabled if rule.enabled is None else rule.enabled,
            semantic=self.semantic if rule.semantic is None else rule.semantic,
            ttl_s=self.ttl_s if rule.ttl_s is None else rule.ttl_s,
            threshold=self.threshold if rule.threshold is None else rule.threshold,
            semantic_multi_turn=self.semantic_multi_turn,
            semantic_tools=self.semantic_tools,
        )


@dataclass(frozen=True, slots=True)
class Directive:
    """The request's `x-switchyard-cache` header: `no-cache` (do not answer from the cache, but store the
    fresh answer) and/or `no-store` (the request neither reads nor writes the cache)."""

    read: bool = True
    write: bool = True


def parse_directive(header: str | None, cache_control: str | None = None) -> Directive:
    """The request's directive: its `x-switchyard-cache` header (anything else in it is a 400), narrowed by
    the standard request `Cache-Control` (RFC 9111 5.2.1): `no-store` as ours, `no-cache` or `max-age=0`
    as our `no-cache` (no stored answer without asking the model again); its other directives say nothing
    a cache of answers can honour and are left alone, as an HTTP cache leaves what it does not know."""
    own = _own_directive(header)
    if not cache_control:
        return own
    tokens = {t.strip().lower().replace(" ", "") for t in cache_control.split(",")}
    fresh = bool(tokens & {"no-cache", "max-age=0", "no-store"})
    return Directive(read=own.read and not fresh, write=own.write and "no-store" not in tokens)


def _own_directive(header: str | None) -> Directive:
    if header is None or not header.strip():
        return Directive()
    tokens = {t.strip().lower() for t in header.split(",") if t.strip()}
    unknown = tokens - set(DIRECTIVES)
    if unknown:
        raise InvalidRequest(
            f"{CACHE_HEADER} takes {' and/or '.join(DIRECTIVES)}; got {', '.join(sorted(unknown))}",
            param=CACHE_HEADER,
        )
    return Directive(read=not tokens, write="no-store" not in tokens)


class CachedAnswer(BaseModel):
    """One stored answer (the value in KV), with the tenant it belongs to and when it expires."""

    tenant_id: str
    key: str
    source_task_id: str
    model: str
    provider: str
    tier: str
    content: str
    finish_reason: str
    usage: Usage
    created_at: float
    expires_at: float
    # An embedding answer's vectors, inline (its `content` is empty); None for a chat answer.
    embedding: EmbeddingResult | None = None
    # The words of the embedded prompt, in order, each as a short hash (`prompt_words`): what a semantic
    # neighbour is checked against (`reordered`); None when the answer was kept exact only.
    words: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    kind: Kind
    answer: CachedAnswer
    similarity: float | None = None


def _text(content: Any) -> Any:
    """Content as the model sees it: a list of text parts is the same prompt as the joined string."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text", "")) for p in content).strip()
    if isinstance(content, str):
        return content.strip()
    return content


def _attachments(content: Any) -> list[Any]:
    """A turn's parts other than text."""
    if not isinstance(content, list):
        return []
    return [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")]


def _normalised(request: ChatRequest, *, without_user_turns: bool = False) -> dict[str, Any]:
    # `n` is always 1 and `logprobs` off here (several answers and log probabilities bypass the cache), and
    # both are left out so keys stay what they were.
    # and the provider's prompt-cache grouping (`prompt_cache_key`) changes no answer
    left_out = {"stream", "stream_start", "n", "logprobs", "top_logprobs", "prompt_cache_key"}
    body = request.model_dump(mode="json", exclude_none=True, exclude=left_out)
    messages = []
    for message in body.pop("messages"):
        if without_user_turns and message.get("role") == "user":
            # what the embedded text cannot tell apart: the turn's images and documents (PDFs), whole
            attached = _attachments(message.get("content"))
            if attached:
                messages.append({"role": "user", "attachments": attached})
            continue
        if "content" in message:
            message["content"] = _text(message["content"])
        messages.append(message)
    body["messages"] = messages
    return body


def _digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def exact_key(tenant_id: str, request: ChatRequest) -> str:
    """The request's hash within its tenant (the tenant is hashed in too, and is also the key's prefix)."""
    return _digest({"tenant": tenant_id, "request": _normalised(request)})


def embedding_key(tenant_id: str, request: EmbeddingRequest) -> str:
    """An embedding request's hash within its tenant: the texts as sent, in order, byte for byte."""
    return _digest(
        {
            "version": EMBEDDING_KEY_VERSION,
            "kind": "embedding",
            "tenant": tenant_id,
            "model": request.model,
            "dimensions": request.dimensions,
            "input": request.input,
        }
    )


def semantic_scope(tenant_id: str, request: ChatRequest) -> str:
    """What a semantic neighbour must share: tenant, model, parameters, every non-user message, and what
    the embedding barely sees of the user turns' text (`literals`)."""
    text = "\n".join(m.text() for m in request.messages if m.role == "user")
    return _digest(
        {
            "tenant": tenant_id,
            "request": _normalised(request, without_user_turns=True),
            "literals": literals(text),
        }
    )


def point_id(tenant_id: str, key: str) -> str:
    """The vector's id: one point per stored answer, so storing it again replaces it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"switchyard-cache:{tenant_id}:{key}"))


def semantic_text(request: ChatRequest, config: CacheConfig) -> str | None:
    """The text to embed, or None when this request may not use the semantic cache: tool calls and
    multi-turn conversations are exact-only unless the configuration allows them."""
    if not config.semantic:
        return None
    if not config.semantic_tools and (
        request.tools or any(m.tool_calls or m.role == "tool" for m in request.messages)
    ):
        return None
    turns = [m for m in request.messages if m.role not in ("system", "developer")]
    if not config.semantic_multi_turn and (len(turns) != 1 or turns[0].role != "user"):
        return None
    text = "\n".join(m.text() for m in turns if m.role == "user").strip()
    return text or None


def storable(
    *, content: str, finish_reason: str, tool_calls: object, thinking: object = None, refusal: object = None
) -> bool:
    """Only plain, finished text answers are reused (never tool calls, errors, refusals or empty answers,
    nor an answer with thinking blocks, which the cache does not keep: a replay would lack them)."""
    plain = not tool_calls and not thinking and not refusal
    return bool(content) and finish_reason in ("stop", "length") and plain


def storable_embedding(result: EmbeddingResult | None) -> bool:
    """Only vectors that came inline in the result are kept (up to the executor's inline limit, 256 KiB of
    float32 by default); larger ones, read from the object store, are not."""
    return result is not None and result.data is not None
