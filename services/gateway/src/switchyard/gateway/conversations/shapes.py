"""A conversation item as OpenAI keeps and lists it (apart from `items`, which reads the stored responses'
chain: the Responses face's chain appends through this)."""

from __future__ import annotations

from typing import Any

_STATUS = frozenset(("message", "function_call", "function_call_output", "custom_tool_call_output"))


def kept(item: dict[str, Any], item_id: str) -> dict[str, Any]:
    """`item` as the conversation keeps and lists it: its id, `type`, and a message's text as a part (an
    assistant's `output_text`, others' `input_text`); `status` completed unless it says another."""
    kind = item.get("type") or "message"
    out = {"id": item_id, "type": kind, **{k: v for k, v in item.items() if k not in ("id", "type")}}
    if kind == "message" and isinstance(out.get("content"), str):
        text = out["content"]
        out["content"] = [
            {"type": "output_text", "text": text, "annotations": []}
            if out.get("role") == "assistant"
            else {"type": "input_text", "text": text}
        ]
    if kind in _STATUS and out.get("status") is None:
        out["status"] = "completed"
    return out
