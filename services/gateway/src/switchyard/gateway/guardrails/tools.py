"""Tool definitions as the input guardrails read them: each tool's description and every string in its
JSON schema (values, and property names for the injection rules), each with its place (`ToolSpot`), and
a tool with those values passed through a text screen (keys are kept: renaming a property would break
the client's tool)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from switchyard.common.events import FunctionSpec, ToolSpec
from switchyard.gateway.guardrails.models import ToolSpot


def tool_texts(index: int, tool: ToolSpec, *, keys: bool = False) -> Iterator[tuple[ToolSpot, str]]:
    """The tool's texts the model reads besides its name: its description, then its schema's strings."""
    function = tool.function
    if function.description:
        yield ToolSpot(index, "description"), function.description
    if function.parameters is not None:
        yield from _strings(function.parameters, index, (), keys=keys)


def _strings(
    value: Any, index: int, path: tuple[str | int, ...], *, keys: bool
) -> Iterator[tuple[ToolSpot, str]]:
    if isinstance(value, str):
        yield ToolSpot(index, "parameters", path), value
    elif isinstance(value, dict):
        for key, item in value.items():
            if keys:
                yield ToolSpot(index, "parameters", (*path, key)), str(key)
            yield from _strings(item, index, (*path, key), keys=keys)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _strings(item, index, (*path, n), keys=keys)


def screened_tool(tool: ToolSpec, screen: Callable[[str], str]) -> ToolSpec:
    """The tool with its description and its schema's string values through `screen`; the same object
    when nothing changed."""
    function = tool.function
    description = screen(function.description) if function.description else function.description
    parameters = _screened(function.parameters, screen) if function.parameters is not None else None
    if description == function.description and parameters == function.parameters:
        return tool
    changed = function.model_copy(update={"description": description, "parameters": parameters})
    return tool.model_copy(update={"function": changed})


def _screened(value: Any, screen: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return screen(value)
    if isinstance(value, dict):
        return {k: _screened(v, screen) for k, v in value.items()}
    if isinstance(value, list):
        return [_screened(v, screen) for v in value]
    return value


def spot_param(spot: ToolSpot, place: tuple[str, str]) -> str:
    """The spot as the client's request names it: `place` is where the face has the tool's definition and
    its schema's field name (`ChatCompletionRequest.tool_place`)."""
    prefix, schema = place
    if spot.field is None:
        return prefix
    field = schema if spot.field == "parameters" else spot.field
    return ".".join([prefix, field, *(str(p) for p in spot.path)])


def format_tool(spec: dict[str, Any] | None) -> ToolSpec | None:
    """A JSON-schema answer format (`json_schema`: name, description, schema) read as a tool's definition,
    so the hooks that read tools read it too; None for another format."""
    if spec is None or not isinstance(spec.get("schema"), dict):
        return None
    description = spec.get("description") if isinstance(spec.get("description"), str) else None
    return ToolSpec(
        function=FunctionSpec(name="response_format", description=description, parameters=spec["schema"])
    )


def with_format(spec: dict[str, Any], tool: ToolSpec) -> dict[str, Any]:
    """The answer format's `json_schema` with the screened description and schema of `tool`."""
    changed = {**spec, "schema": tool.function.parameters}
    if tool.function.description is not None:
        changed["description"] = tool.function.description
    return changed
