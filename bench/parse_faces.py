"""What the gateway does on its event loop with one face's request body before admission, as
`parse_cost.py` times it: each face's parse and validation, the task built from it, its size on the bus
(`check_fits`), the default input guardrails and the admission's token estimate; and `fill`, which builds
a body of as many items as fit under a byte limit."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

from switchyard.common.envelope import encoded_size
from switchyard.gateway import completions, embeddings, faces, legacy, serving
from switchyard.gateway.budgets import pricing
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.gemini.request import parse_embeddings
from switchyard.gateway.guardrails.chain import build
from switchyard.gateway.guardrails.models import GuardrailConfig
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.stored_responses import chain
from switchyard.gateway.tenants import Principal
from switchyard.gateway.views.gemini import _Face

R = TypeVar("R")
PRINCIPAL = Principal(tenant_id="t", api_key_id="k", user_id=None, key_prefix="sk")
SETTINGS = GatewaySettings()
GUARDS = build(GuardrailConfig(injection="refuse"))
# What the Anthropic face reads of the gateway: the policy's aliases (none here)
NO_ALIASES = SimpleNamespace(catalog=SimpleNamespace(policy=SimpleNamespace(aliases=())))


def fill(
    head: str, item: Callable[[int], str], tail: str, *, limit: int, sep: str = ",", most: int | None = None
) -> tuple[bytes, int]:
    """`head` + as many `item(n)` as fit under `limit` bytes (at most `most`) + `tail`."""
    parts, size, n = [], len(head) + len(tail), 0
    while most is None or n < most:
        piece = item(n)
        if size + len(piece) + len(sep) > limit:
            break
        parts.append(piece)
        size += len(piece) + len(sep)
        n += 1
    return (head + sep.join(parts) + tail).encode(), n


def run_sync(coroutine: Coroutine[Any, Any, R]) -> R:
    """A coroutine that awaits nothing (no store: nothing to look up), run to its end without an event loop
    (asyncio.run's own setup would be timed too)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("the coroutine awaited something")


def chat(body: bytes) -> Any:
    return after(read_chat(body))


def read_chat(body: bytes) -> ChatCompletionRequest:
    return completions.parse_request(body, max_prompt_chars=SETTINGS.max_prompt_chars)


def after(parsed: ChatCompletionRequest) -> Any:
    """What `serving.serve` does on the event loop between the parse and the admission's estimate: the
    input guardrails, the task, its size on the bus (`check_fits`)."""
    GUARDS.run_input(list(parsed.messages))
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    encoded_size(task)
    return pricing.prompt_tokens(task.request)


def responses(body: bytes) -> Any:
    return after(read_responses(body))


def read_responses(body: bytes) -> ChatCompletionRequest:
    talk = run_sync(chain.load(None, "t", body))
    return talk.parse(body, max_prompt_chars=SETTINGS.max_prompt_chars)


def anthropic(body: bytes) -> Any:
    return after(read_anthropic(body))


def read_anthropic(body: bytes) -> ChatCompletionRequest:
    face = run_sync(faces.as_asked(NO_ALIASES, PRINCIPAL, body))  # type: ignore[arg-type]
    return face.parse(body, max_prompt_chars=SETTINGS.max_prompt_chars)


def gemini(body: bytes) -> Any:
    return after(read_gemini(body))


def read_gemini(body: bytes) -> ChatCompletionRequest:
    face = _Face("auto", stream=False, sse=False, request_id="req_bench")
    return face.parse(body, max_prompt_chars=SETTINGS.max_prompt_chars)


def legacy_completion(body: bytes) -> Any:
    return after(read_legacy(body))


def read_legacy(body: bytes) -> ChatCompletionRequest:
    return legacy.parse_request(body, max_prompt_chars=SETTINGS.max_prompt_chars)


def embeddings_request(body: bytes) -> Any:
    parsed = serving._openai_embeddings(body, SETTINGS)
    return embedded(parsed)


def embedded(parsed: embeddings.Embeddings) -> Any:
    GUARDS.for_embeddings().run_inputs(parsed.inputs)
    task = embeddings.build_task(parsed, PRINCIPAL, priority=None)
    encoded_size(task)
    return pricing.prompt_tokens(task.request)


def gemini_embed(body: bytes) -> Any:
    parsed = parse_embeddings(
        body, model="m", path_model="m", batch=True, max_prompt_chars=SETTINGS.max_prompt_chars
    )
    return embedded(parsed)
