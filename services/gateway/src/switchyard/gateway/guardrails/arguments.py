"""A tool call's arguments (a JSON object as a string) through a text screen, value by value: each string
and each integer (a card number may come as a JSON number) is screened as text, and the arguments stay
valid JSON. Arguments that are not JSON are screened as text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from switchyard.common.events import ToolCall


def screened_arguments(arguments: str, screen: Callable[[str], str]) -> str:
    """`arguments` with every string and integer value passed through `screen` (a value it changes becomes
    a string); the same string when nothing changed."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return screen(arguments)
    changed = False

    def walk(v: Any) -> Any:
        nonlocal changed
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
            text = v if isinstance(v, str) else str(v)
            out = screen(text)
            if out != text:
                changed = True
                return out
        return v

    screened = walk(value)
    return json.dumps(screened, ensure_ascii=False) if changed else arguments


def screened_calls(calls: list[ToolCall], screen: Callable[[str], str]) -> list[ToolCall]:
    """Each call with its arguments screened; a call nothing changed is kept as it was."""
    out: list[ToolCall] = []
    for call in calls:
        arguments = screened_arguments(call.function.arguments, screen)
        if arguments != call.function.arguments:
            call = call.model_copy(
                update={"function": call.function.model_copy(update={"arguments": arguments})}
            )
        out.append(call)
    return out
