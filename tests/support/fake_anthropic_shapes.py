"""Request shapes the Anthropic stand-in (fake_anthropic.py) checks and answers by: structured outputs'
schemas (closed objects, a sample answer held to one), prompt-cache breakpoints and the usage they give."""

from __future__ import annotations

from typing import Any


def format_refusal(body: dict[str, Any]) -> str | None:
    """Structured outputs: a JSON schema whose objects are closed (`additionalProperties: false`), as
    Anthropic requires."""
    output = (body.get("output_config") or {}).get("format")
    if output is None:
        return None
    if output.get("type") != "json_schema" or not isinstance(output.get("schema"), dict):
        return "output_config.format: Input should be a json_schema format with a schema"
    if not _closed(output["schema"]):
        return (
            "output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly "
            "set to false"
        )
    return None


def _closed(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        return False
    return all(_closed(s) for s in (schema.get("properties") or {}).values()) and _closed(schema.get("items"))


def sample(schema: Any) -> Any:
    """An answer held to a schema, as structured outputs make one."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "object":
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items"))]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), "Paris")


def cache_marks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `cache_control` breakpoints of a request: on system blocks, content blocks and tools."""
    blocks = [b for b in body.get("system") or [] if isinstance(b, dict)] + list(body.get("tools") or [])
    for message in body.get("messages") or []:
        if isinstance(message.get("content"), list):
            blocks += message["content"]
    return [b["cache_control"] for b in blocks if isinstance(b, dict) and "cache_control" in b]


def input_usage(model: str) -> dict[str, int]:
    """Anthropic counts cache reads and writes apart from `input_tokens`; `cached` reads 1,500 prompt
    tokens from the cache and writes 300 (a stream says so in `message_start` only)."""
    read, written = (1500, 300) if model == "cached" else (0, 0)
    return {"input_tokens": 12, "cache_creation_input_tokens": written, "cache_read_input_tokens": read}
