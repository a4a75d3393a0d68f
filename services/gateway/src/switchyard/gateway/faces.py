"""The completion faces as `serving.serve` takes them: how each reads a body into the pipeline's chat
request and renders its answer whole or streamed (OpenAI chat completions, legacy completions,
Anthropic messages, Responses), and the faces of their own that one request binds (the Anthropic face's
answer naming the model as asked, the Responses face's stored conversation)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from switchyard.common.events import TaskCompleted, TaskSubmitted
from switchyard.gateway import (
    bodies,
    completions,
    keepalive,
    legacy,
    messages,
    messages_render,
    responses,
    responses_render,
    responses_stream,
)
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.state import Gateway
from switchyard.gateway.stored_responses import chain
from switchyard.gateway.tenants import Principal


@dataclass(frozen=True)
class Face:
    parse: Callable[..., ChatCompletionRequest]
    render: Callable[[TaskSubmitted, TaskCompleted], bytes]
    stream: Callable[..., AsyncIterator[bytes]]
    # a face of its own for one request, from its body before it is parsed (the Responses face: the stored
    # conversation the request continues)
    bind: Callable[[Gateway, Principal, bytes], Awaitable[Face]] | None = None
    # called with a whole answer before it is rendered (the Responses face stores it); a stream's face
    # does its own before its last event
    keep: Callable[[TaskSubmitted, TaskCompleted], Awaitable[None]] | None = None
    # what a stream sends in a silence, which its clients skip (keepalive.py); None: nothing
    beat: bytes | None = keepalive.COMMENT


async def conversation(gw: Gateway, principal: Principal, body: bytes) -> Face:
    """The Responses face for one request: the stored conversation it continues, its answer stored (unless
    the deployment stores no responses: `gw.responses` None), what it repeats of the request."""
    talk = await chain.load(gw.responses, principal.tenant_id, body)
    return Face(talk.parse, talk.render, talk.stream, keep=talk.keep_answer)


async def as_asked(gw: Gateway, principal: Principal, body: bytes) -> Face:
    """The Anthropic face for one request (its body read once): its answers name the model as the request
    named it (`messages_render.shown_model`). Its parser takes the JSON read here and lets it go: the face
    is held until the answer ends, and the JSON of a large body with it (`serve`)."""
    read = [bodies.json_object(body)]
    asked = messages.asked_model(read[0])
    aliases = gw.catalog.policy.aliases

    def parse(_: bytes, *, max_prompt_chars: int) -> ChatCompletionRequest:
        return messages.parse_loaded(read.pop(), max_prompt_chars=max_prompt_chars, aliases=aliases)

    return Face(
        parse,
        functools.partial(messages_render.message_json, asked=asked),
        functools.partial(messages_render.stream_events, asked=asked),
        beat=messages_render.PING,
    )


OPENAI = Face(completions.parse_request, completions.completion_json, completions.stream_events)
ANTHROPIC = Face(
    messages.parse_request,
    messages_render.message_json,
    messages_render.stream_events,
    bind=as_asked,
    beat=messages_render.PING,
)
# what serves a request is the face `conversation` binds to it (these render no request's echoed fields)
RESPONSES = Face(
    responses.parse_request,
    responses_render.response_json,
    responses_stream.stream_events,
    bind=conversation,
)
LEGACY = Face(legacy.parse_request, legacy.completion_json, legacy.stream_events)
