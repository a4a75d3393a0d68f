"""A conversation's items as OpenAI keeps them: each with an id (`msg_...`, `fc_...`, as the Responses API
gives them) and a status, a message's text as content parts; and the items a client adds, checked as
the Responses API checks input items, so that none makes every later response of the conversation a 400.
"""

from __future__ import annotations

import uuid
from typing import Any

from switchyard.gateway import bounds, responses
from switchyard.gateway.conversations.shapes import kept
from switchyard.gateway.errors import InvalidRequest, shown
from switchyard.gateway.stored_responses.chain import ITEM_PREFIX, DuplicateItem

MAX_ADDED = 20  # OpenAI's: items one create call adds, with the conversation or to it
KINDS = tuple(ITEM_PREFIX)  # the input item types a conversation keeps (those the Responses face reads)


def new_item_id(kind: str) -> str:
    return f"{ITEM_PREFIX.get(kind, 'item')}_{uuid.uuid4().hex}"


def added(raw: Any, *, held: set[str], param: str = "items") -> list[dict[str, Any]]:
    """The items a create call adds (`raw`, at most MAX_ADDED), checked and as kept; `held`: the ids of the
    conversation's items (a client's id that is one of them is a 400, as a repeated input item is)."""
    if not isinstance(raw, list):
        raise InvalidRequest(f"{param}: must be a list of items", code="invalid_type", param=param)
    if len(raw) > MAX_ADDED:
        raise bounds.too_long(param, len(raw), MAX_ADDED)
    bounds.check_conversation(raw, param=param, parts=responses.ITEM_PARTS)
    ids = set(held)
    out = []
    for n, item in enumerate(raw):
        where = f"{param}.{n}"
        _check(item, where)
        item_id = item.get("id")
        if item_id is None:
            item_id = new_item_id(item.get("type") or "message")
        elif not isinstance(item_id, str) or not 0 < len(item_id) <= 200:
            raise InvalidRequest(
                f"{where}.id: a string of 1 to 200 characters", code="invalid_type", param=f"{where}.id"
            )
        elif item_id in ids:
            raise DuplicateItem(f"Duplicate item found with id {item_id[:80]}.", param=where)
        ids.add(item_id)
        out.append(kept(item, item_id))
        bounds.check_kept(out[-1], param=where)
    return out


def _check(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where}: an item is an object", code="invalid_type", param=where)
    kind = item.get("type") or "message"
    if kind == "item_reference":
        raise InvalidRequest(
            f"{where}: item references are not taken into a conversation here: add the item itself",
            code="unsupported_parameter",
            param=where,
        )
    if kind not in KINDS:
        raise InvalidRequest(
            f"{where}.type: items of type {shown(kind)} are not kept here (message, function_call, "
            "function_call_output, custom_tool_call, custom_tool_call_output and reasoning are)",
            code="invalid_value",
            param=f"{where}.type",
        )
    try:
        responses.chat_messages([item])
    except InvalidRequest as exc:
        if exc.param == "input":  # "no message to answer": a lone reasoning item, which is fine here
            return
        message = exc.message.replace("input.0", where, 1)
        param = exc.param.replace("input.0", where, 1) if exc.param else where
        raise InvalidRequest(message, code=exc.code, param=param) from exc
