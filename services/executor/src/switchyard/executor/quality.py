"""Quality checks on an answer, for the cascade: when one fails, the next (stronger) model is asked.

Each check returns why it failed, or None. Pure functions: they read the request, the classification
and the reply; they call nobody.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from switchyard.common.events import ChatRequest, Classification

FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
PYTHON_TAGS = {"python", "py", "python3"}
REFUSAL = re.compile(  # \u2019: the typographic apostrophe many models write
    r"^\s*(?:i['\u2019]m sorry,? but |i am sorry,? but |sorry,? (?:but )?)?"
    r"(?:i (?:can(?:not|['\u2019]t)|won['\u2019]t|am (?:not able|unable)|['\u2019]m (?:not able|unable)) "
    r"(?:help|assist|provide|comply|do that|answer|complete)|as an ai(?: language model)?,? i )",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Answer:
    content: str
    finish_reason: str
    called_tools: bool = False  # an answer that calls tools has no text to judge, and is not empty


@dataclass(frozen=True, slots=True)
class Context:
    request: ChatRequest
    classification: Classification
    min_confidence: float = 0.0


Check = Callable[[Answer, Context], str | None]


def wants_json(request: ChatRequest) -> bool:
    return request.json_format() is not None


def _strip_fence(text: str) -> str:
    match = FENCE.search(text)
    return match.group(2) if match and text.strip().startswith("```") else text


def check_json(answer: Answer, ctx: Context) -> str | None:
    """JSON was asked for (response_format): the answer must parse, and match the schema's basics."""
    if not wants_json(ctx.request) or answer.called_tools:
        return None
    try:
        value = json.loads(_strip_fence(answer.content))
    except json.JSONDecodeError as exc:
        return f"asked for JSON, got text that does not parse ({exc.msg})"
    schema = ctx.request.json_schema()
    if schema is not None:
        return _schema_problem(value, schema, "$")
    return None


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def _schema_problem(value: Any, schema: dict[str, Any], path: str) -> str | None:
    """The JSON Schema keywords structured outputs rely on: type, required, properties, items, enum."""
    expected = schema.get("type")
    kinds = expected if isinstance(expected, list) else [expected] if expected else []
    if kinds and not any(isinstance(value, _TYPES.get(k, object)) for k in kinds):
        return f"{path}: expected {'/'.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: not one of {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}: missing required property {name!r}"
        for name, sub in (schema.get("properties") or {}).items():
            if name in value and isinstance(sub, dict):
                problem = _schema_problem(value[name], sub, f"{path}.{name}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problem = _schema_problem(item, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    return None


def check_code(answer: Answer, ctx: Context) -> str | None:
    """A coding task's Python blocks must parse (other languages are not judged)."""
    if ctx.classification.type != "coding":
        return None
    for tag, body in FENCE.findall(answer.content):
        if tag.lower() in PYTHON_TAGS:
            try:
                ast.parse(body)
            except SyntaxError as exc:
                return f"python block does not parse (line {exc.lineno}: {exc.msg})"
    return None


def check_refusal(answer: Answer, ctx: Context) -> str | None:
    if answer.called_tools:
        return None
    if not answer.content.strip():
        return "empty answer"
    if REFUSAL.search(answer.content[:300]):
        return "the model declined or hedged"
    return None


def check_truncation(answer: Answer, ctx: Context) -> str | None:
    if answer.finish_reason == "length":
        return "cut off at the token limit"
    return None


def check_confidence(answer: Answer, ctx: Context) -> str | None:
    if ctx.classification.confidence < ctx.min_confidence:
        return f"classifier confidence {ctx.classification.confidence:.2f} < {ctx.min_confidence}"
    return None


CHECKS: dict[str, Check] = {
    "json": check_json,
    "code": check_code,
    "refusal": check_refusal,
    "truncation": check_truncation,
    "confidence": check_confidence,
}


def failures(answer: Answer, ctx: Context, names: list[str]) -> list[str]:
    """Why the answer should be escalated (empty: accept it). Unknown check names are ignored."""
    out = []
    for name in names:
        check = CHECKS.get(name)
        problem = check(answer, ctx) if check is not None else None
        if problem:
            out.append(f"{name}: {problem}")
    return out


def score(answer: Answer, ctx: Context, names: list[str]) -> float:
    """Best-of scorer: answers that pass every check first, then a complete answer of reasonable length."""
    passed = 1.0 if not failures(answer, ctx, names or list(CHECKS)) else 0.0
    length = min(len(answer.content), 4000) / 4000.0
    return passed * 10.0 + (answer.finish_reason == "stop") * 1.0 + length
