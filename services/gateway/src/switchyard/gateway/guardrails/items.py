"""A stored response's output items (the Responses API's shape) through the output hooks, for a reader
other than the user it answered: its message text and refusal, its calls' arguments and custom tools'
input, and its reasoning (an item whose summary or text the hooks would change is left out whole, as a
thinking block is: its encrypted carrier holds the signed block). Items the client sent (its own input)
are not answers and are left as they are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchyard.gateway.guardrails.arguments import screened_arguments
from switchyard.gateway.guardrails.models import Finding

Screen = Callable[[str], tuple[str, list[Finding]]]


def screened_items(items: list[dict[str, Any]], run: Screen) -> tuple[list[dict[str, Any]], list[Finding]]:
    """`items` with the model's answers in them passed through `run` (`Chain.run_output`)."""
    found: list[Finding] = []

    def text(value: str) -> str:
        clean, more = run(value)
        found.extend(more)
        return clean

    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message" and item.get("role") == "assistant" and isinstance(item.get("content"), list):
            item = {**item, "content": [_part(p, text) for p in item["content"]]}
        elif kind == "function_call" and isinstance(item.get("arguments"), str):
            item = {**item, "arguments": screened_arguments(item["arguments"], text)}
        elif kind == "custom_tool_call" and isinstance(item.get("input"), str):
            item = {**item, "input": text(item["input"])}
        elif kind == "reasoning":
            said = [p.get("text") for p in [*(item.get("summary") or []), *(item.get("content") or [])]]
            changed = [more for t in said if isinstance(t, str) and (more := run(t)[1])]
            if changed:
                found.extend(f for more in changed for f in more)
                continue
        out.append(item)
    return out, found


def _part(part: Any, text: Callable[[str], str]) -> Any:
    if not isinstance(part, dict):
        return part
    if part.get("type") == "output_text" and isinstance(part.get("text"), str):
        clean = text(part["text"])
        # its tokens' log probabilities would spell out what was redacted
        return part if clean == part["text"] else {**part, "text": clean, "logprobs": []}
    if part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
        return {**part, "refusal": text(part["refusal"])}
    return part
