"""`response.steer` on a Responses WebSocket connection, as OpenAI documents it (openai 3.54's
ResponseSteerEvent and its accepted, pending and failed events): user input queued for the response
under way, given to the response that continues it.

The server owns the input once it answers `response.steer.accepted`; the successor's `response.created` is
the commit point. Our responses run whole on the pipeline (a provider call takes no input mid-answer), so
the steered response is never ended early (OpenAI's `incomplete`, reason `steered`, is a may): once it has
ended, its queued input is
- the input of an automatic successor, created at once on its stream with the steered response's settings
  and `previous_response_id` (when it ended with an answer);
- or, when it ended with calls of the client's tools, held (`response.steer.pending`, with a stub of each
  output it waits for) and put in the input of the `response.create` that continues it on the same
  stream, after the tool outputs that open it (OpenAI says prepended; a model reads a call's output right
  after the call, so the queued turn follows them);
- or given back (`response.steer.failed`) when it failed, or its successor could not be created.
A response bound to a conversation is not steered (`steering_not_supported`), as OpenAI says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from switchyard.common.ids import new_id

MAX_PENDING = 16  # steering submissions queued for one response
# why a response.steer failed, as its `response.steer.failed` event says
NOT_CREATED = (
    "the response continuing the steered one could not be created: send the input in a response.create"
)
NOT_ACTIVE = "the steered response ended without an answer (it failed or was ended): send the input again"
NOT_FOUND = (
    "no response under way on this connection has this id (steer a response after its response.created)"
)
COMPLETED = "the response has completed: send the input in the response.create that continues it"
CONVERSATION = "a response bound to a conversation is not steered: send the input in the next response.create"
NOT_CONTINUED = "the response waiting for tool outputs was not continued before others: send the input again"
TOO_LARGE = "the steering input queued on this connection would be larger than a request's body may be"
TOO_MANY = f"{MAX_PENDING} steering submissions are queued for this response already"
PARTS = frozenset({"input_text", "input_image", "input_file"})
CALLS = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output"}


@dataclass
class Steer:
    """One accepted submission: its id, the response it steers, its input as sent and as input items."""

    id: str
    target: str
    input: Any
    items: list[dict[str, Any]]
    size: int = 0  # its items' bytes, as JSON

    def said(self) -> dict[str, str]:
        return {"id": self.id, "previous_response_id": self.target}


def accept(event: dict[str, Any]) -> Steer | str:
    """The submission, or why its event is invalid."""
    extra = set(event) - {"type", "previous_response_id", "input"}
    if extra:
        return f"response.steer takes only type, previous_response_id and input (not {sorted(extra)})"
    target = event.get("previous_response_id")
    if not isinstance(target, str) or not target:
        return "previous_response_id: the id of the response to steer"
    items = _items(event.get("input"))
    if isinstance(items, str):
        return items
    size = len(orjson.dumps(items))
    return Steer(id=f"steer_{new_id()}", target=target, input=event.get("input"), items=items, size=size)


def _items(raw: Any) -> list[dict[str, Any]] | str:
    if isinstance(raw, str) and raw:
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list) or not raw:
        return "input: a non-empty string or a non-empty array of user messages"
    for n, item in enumerate(raw):
        if (
            not isinstance(item, dict)
            or item.get("role") != "user"
            or item.get("type", "message") != "message"
        ):
            return f"input.{n}: steering takes user messages only"
        if set(item) - {"type", "role", "content"}:
            return f"input.{n}: a steering message has only type, role and content"
        content = item.get("content")
        parts = content if isinstance(content, list) else None
        if not (isinstance(content, str) and content) and not (
            parts and all(isinstance(p, dict) and p.get("type") in PARTS for p in parts)
        ):
            return f"input.{n}.content: a string, or input_text, input_image and input_file parts"
    return [{"type": "message", **item} for item in raw]


def accepted(steer: Steer) -> dict[str, Any]:
    return {"type": "response.steer.accepted", "sequence_number": 0, "steer": steer.said()}


def failed(event: dict[str, Any], code: str, message: str, steer_id: str | None = None) -> dict[str, Any]:
    """The submission given back: `event` the steer event (or the accepted submission's fields)."""
    steer = {"input": event.get("input"), "previous_response_id": event.get("previous_response_id")}
    error = {"type": "invalid_request_error", "code": code, "message": message}
    shown = {**steer, "id": steer_id} if steer_id is not None else steer
    return {"type": "response.steer.failed", "sequence_number": 0, "error": error, "steer": shown}


def failed_after(steer: Steer, code: str, message: str) -> dict[str, Any]:
    return failed({"input": steer.input, "previous_response_id": steer.target}, code, message, steer.id)


def required_input(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Stubs of the outputs the client owes for `response`'s calls of its tools (none: it answered)."""
    stubs = []
    for item in response.get("output") or ():
        kind = CALLS.get(item.get("type"))
        if kind == "function_call_output":
            stubs.append({"type": kind, "call_id": item.get("call_id"), "name": item.get("name")})
        elif kind is not None:
            stubs.append({"type": kind, "call_id": item.get("call_id")})
    return stubs


def pending(steer: Steer, required: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "response.steer.pending",
        "sequence_number": 0,
        "steer": steer.said(),
        "reason": "waiting_for_required_input",
        "required_input": required,
    }


def successor(create: dict[str, Any], response_id: str, steers: list[Steer]) -> dict[str, Any]:
    """The `response.create` of the automatic successor: the steered one's settings, continuing it with
    the queued input."""
    queued = [item for steer in steers for item in steer.items]
    return {**create, "previous_response_id": response_id, "input": queued}


def with_queued(create: dict[str, Any], steers: list[Steer]) -> dict[str, Any]:
    """An explicit continuation of a response that waited for tool outputs, with the queued input after
    the outputs its input opens with."""
    own = create.get("input")
    items = [{"type": "message", "role": "user", "content": own}] if isinstance(own, str) and own else own
    items = list(items) if isinstance(items, list) else []
    cut = next((n for n, i in enumerate(items) if not _an_output(i)), len(items))
    queued = [item for steer in steers for item in steer.items]
    return {**create, "input": [*items[:cut], *queued, *items[cut:]]}


def _an_output(item: Any) -> bool:
    return isinstance(item, dict) and str(item.get("type", "")).endswith("_output")
