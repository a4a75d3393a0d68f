"""Gemini's schemas (`parameters`, `responseSchema`: an OpenAPI 3.0 subset, types in capitals, `nullable`,
`propertyOrdering`; and `parametersJsonSchema` / `responseJsonSchema`, which the Gemini CLI also sends with
capitalised types) as the JSON Schema the pipeline carries for every provider. Only a schema's own keywords
are rewritten: the names under `properties` (and `$defs`) are the client's and stay as they are."""

from __future__ import annotations

from typing import Any

from switchyard.gateway.bounds import too_deep

# OpenAPI keywords as the Python SDK may send them (its pydantic models dump some in snake case).
_KEYWORDS = {
    "any_of": "anyOf",
    "min_items": "minItems",
    "max_items": "maxItems",
    "min_length": "minLength",
    "max_length": "maxLength",
    "min_properties": "minProperties",
    "max_properties": "maxProperties",
    "additional_properties": "additionalProperties",
}
# Gemini's hints that JSON Schema has no word for: the order it writes properties in, an example value.
_DROPPED = ("propertyOrdering", "property_ordering", "example")
_SCHEMA = ("items", "not", "additionalProperties")  # keywords whose value is one schema
_SCHEMAS = ("anyOf", "oneOf", "allOf", "prefixItems")  # a list of schemas
_NAMED = ("properties", "$defs", "definitions", "patternProperties")  # names -> schemas


# Schema levels rewritten at most: a deeper one cannot be carried as a task anyway (each level is at least a
# JSON level; the serializers stop at ~255), and rewriting it recursed out of Python's stack (a 500).
MAX_DEPTH = 255


def json_schema(schema: Any, *, param: str) -> Any:
    """`schema` in JSON Schema's terms: types in lower case, `nullable: true` as a type that admits null;
    400 `nesting_too_deep` naming `param` for one nested more than MAX_DEPTH schemas deep."""
    return _rewritten(schema, param, MAX_DEPTH)


def _rewritten(schema: Any, param: str, left: int) -> Any:
    if not isinstance(schema, dict):
        return schema
    if left == 0:
        raise too_deep(param, f"a schema more than {MAX_DEPTH} levels deep")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED:
            continue
        key = _KEYWORDS.get(key, key)
        if key == "type":
            value = [_type(t) for t in value] if isinstance(value, list) else _type(value)
        elif key in _SCHEMA:
            value = _rewritten(value, param, left - 1)
        elif key in _SCHEMAS and isinstance(value, list):
            value = [_rewritten(v, param, left - 1) for v in value]
        elif key in _NAMED and isinstance(value, dict):
            value = {name: _rewritten(v, param, left - 1) for name, v in value.items()}
        out[key] = value
    if out.pop("nullable", False) is True:
        kind = out.get("type")
        if isinstance(kind, str) and kind != "null":
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        elif kind is None and "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def _type(value: Any) -> Any:
    """OpenAPI's `STRING`, `OBJECT`, ... as JSON Schema's `string`, `object`, ... (`TYPE_UNSPECIFIED`: no
    type, which JSON Schema says by leaving it out: kept as is, the provider refuses it clearly)."""
    return value.lower() if isinstance(value, str) and value.isupper() else value
