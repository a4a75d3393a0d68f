"""The Responses face's tools as the pipeline's function tools, and the names to render the model's calls
of them as the client named them.

- `function` tools as they are.
- `namespace` tools group function and custom tools (Codex groups its sub-agent tools and each MCP
  server's so): each is offered as `<namespace>__<name>`, and its calls come back with their `name` and
  `namespace`. The namespace `functions` is Codex's grouping of top-level tools: its members keep their
  names, and their calls come back without a namespace.
- `custom` tools (free-form text input, optionally held to a grammar: Codex's `exec` and `apply_patch`)
  are function tools taking one string, `input`, the grammar in its description; their calls come back
  as `custom_tool_call` items with that text as `input`.
- Built-in tools OpenAI runs on its side (`HOSTED_TOOLS`) are left out of what the model is offered: no
  model here can run them, and Codex sends `web_search` with every request and fails its turn on a 400.
  Other kinds (`local_shell`, `shell`, ...) are refused.

Tools come in the request's `tools`, and in `additional_tools` input items (Codex's "Responses Lite"
requests carry all their tools so).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, ValidationError

from switchyard.common.events import FunctionSpec, ToolSpec
from switchyard.gateway.errors import InvalidRequest, invalid_fields, shown
from switchyard.gateway.openai_rules import check_function

NAMESPACE_JOIN = "__"  # a namespace's tool's name in the pipeline: <namespace>__<name>
TOP_LEVEL = "functions"  # the namespace whose tools are top-level ones (Codex's grouping)
CUSTOM_INPUT = "input"  # a custom tool's one parameter in the pipeline
ADDITIONAL_TOOLS = "additional_tools"  # an input item carrying tools
# built-in tools OpenAI runs itself (and their dated variants: `web_search_2025_08_26`, ...)
HOSTED_TOOLS = ("web_search", "file_search", "code_interpreter", "image_generation", "computer", "mcp")


class FunctionTool(BaseModel):
    """A function tool, in the Responses API's flat shape (also as a member of a namespace tool)."""

    type: str
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomFormat(BaseModel):
    type: str = Field(pattern="^(text|grammar)$")
    syntax: str | None = None
    definition: str | None = None


class CustomTool(FunctionTool):
    format: CustomFormat | None = None


@dataclass(frozen=True)
class ClientTool:
    """How the client named a tool the pipeline knows by another name, or in another shape."""

    name: str
    namespace: str | None = None
    custom: bool = False


def flat_name(namespace: Any, name: str) -> str:
    """A tool's name in the pipeline (`namespace` None or not a string: a top-level tool)."""
    if not isinstance(namespace, str) or not namespace or namespace == TOP_LEVEL:
        return name
    return f"{namespace}{NAMESPACE_JOIN}{name}"


def offered(tools: Any, items: Any) -> list[tuple[str, dict[str, Any]]]:
    """The request's tools, then those of its `additional_tools` input items, each with where it is."""
    out = [(f"tools.{n}", t) for n, t in enumerate(tools)] if isinstance(tools, list) else []
    for index, item in enumerate(items if isinstance(items, list) else ()):
        if isinstance(item, dict) and item.get("type") == ADDITIONAL_TOOLS:
            carried = item.get("tools")
            if not isinstance(carried, list):
                raise InvalidRequest(
                    f"input.{index}.tools: an additional_tools item carries a list of tools",
                    param=f"input.{index}.tools",
                )
            out += [(f"input.{index}.tools.{n}", t) for n, t in enumerate(carried)]
    return out


def pipeline_tools(tools: list[tuple[str, dict[str, Any]]]) -> list[ToolSpec] | None:
    """The tools (`offered`) as the pipeline's function tools; see the module's docstring."""
    out: list[ToolSpec] = []
    taken: set[str] = set()
    for where, tool, client in _callable(tools):
        name = flat_name(client.namespace, client.name)
        if name in taken:
            raise InvalidRequest(
                f"{where}: {client.name!r} is named {name!r} for the model, as another tool is",
                code="invalid_value",
                param=f"{where}.name",
            )
        taken.add(name)
        out.append(_custom_tool(tool, where, name) if client.custom else _function_tool(tool, where, name))
    return out or None


def tool_places(tools: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, str]]:
    """Where each tool the model may call is defined (`ChatCompletionRequest.tool_place`), by its name for
    the model: a function's schema is its `parameters`, a custom tool's its `format`."""
    return {
        flat_name(client.namespace, client.name): (where, "format" if client.custom else "parameters")
        for where, _, client in _callable(tools)
    }


def client_tools(tools: list[tuple[str, dict[str, Any]]]) -> dict[str, ClientTool]:
    """The pipeline's name of each tool named or shaped otherwise for the client (a namespace's, a custom
    one) -> how the client names it (`tools` as `pipeline_tools` accepted them)."""
    out = {}
    for _, _, client in _callable(tools):
        if client.custom or flat_name(client.namespace, client.name) != client.name:
            out[flat_name(client.namespace, client.name)] = client
    return out


def _callable(tools: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any], ClientTool]]:
    """Each tool the model may call (a namespace's members one by one), with where it is in the request."""
    for where, tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace":
            yield from _members(tool, where)
        elif isinstance(kind, str) and kind.startswith(HOSTED_TOOLS):
            continue
        elif kind in ("function", "custom"):
            yield where, tool, ClientTool(_name(tool), custom=kind == "custom")
        else:
            raise InvalidRequest(
                f"{where}: tools of type {shown(kind)} are not served here (function, custom and namespace "
                "tools are; built-in tools are left out)",
                code="unsupported_parameter",
                param=f"{where}.type",
            )


def _members(tool: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any], ClientTool]]:
    namespace, members = tool.get("name"), tool.get("tools")
    if not isinstance(namespace, str) or not namespace or not isinstance(members, list) or not members:
        raise InvalidRequest(
            f'{where}: a namespace tool takes "name" and "tools" (its function and custom tools)',
            param=where,
        )
    for n, member in enumerate(members):
        at = f"{where}.tools.{n}"
        kind = member.get("type") if isinstance(member, dict) else None
        if kind not in ("function", "custom"):
            raise InvalidRequest(
                f"{at}: tools of type {shown(kind)} are not served here in a namespace (function and custom "
                "tools are)",
                code="unsupported_parameter",
                param=f"{at}.type",
            )
        group = None if namespace == TOP_LEVEL else namespace
        yield at, member, ClientTool(_name(member), namespace=group, custom=kind == "custom")


def _name(tool: dict[str, Any]) -> str:
    name = tool.get("name")
    return name if isinstance(name, str) else ""  # validated with the rest of the tool


def _validated(model: type[FunctionTool], tool: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(tool)
    except ValidationError as exc:
        loc = tuple(int(p) if p.isdigit() else p for p in where.split("."))
        raise invalid_fields([{**e, "loc": (*loc, *e["loc"])} for e in exc.errors()]) from exc


def _function_tool(tool: dict[str, Any], where: str, name: str) -> ToolSpec:
    spec = _validated(FunctionTool, tool, where)
    check_function(spec.name, spec.parameters, at=where)
    return ToolSpec(
        function=FunctionSpec(
            name=name, description=spec.description, parameters=spec.parameters, strict=spec.strict
        )
    )


def _custom_tool(tool: dict[str, Any], where: str, name: str) -> ToolSpec:
    """A custom tool as a function taking its text as `input` (the grammar, if any, said in its
    description: the model writes the text; nothing here holds it to the grammar)."""
    spec = _validated(CustomTool, tool, where)
    check_function(spec.name, None, at=where)
    about = "The tool's input: raw text, not JSON."
    if spec.format is not None and spec.format.type == "grammar" and spec.format.definition:
        about += f" It follows this {spec.format.syntax or 'lark'} grammar:\n{spec.format.definition}"
    parameters = {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": about}},
        "required": [CUSTOM_INPUT],
        "additionalProperties": False,
    }
    return ToolSpec(function=FunctionSpec(name=name, description=spec.description, parameters=parameters))


def custom_input(arguments: str) -> str:
    """A custom tool's text from the arguments the model called its function with (as they are, when they
    are not the one string asked for)."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    text = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else None
    return text if isinstance(text, str) else arguments


class CustomInput:
    """A custom tool's text as its call's arguments stream in (`{"input": "..."}` in pieces): `add` gives
    the text each piece adds, decoded, once the arguments are known to begin as that wrapper. A delta
    cannot be taken back, so nothing is given before that (the client would take the wrapper for the
    text), an escape split between pieces waits for its end (a surrogate pair for both halves), and
    arguments of another shape (other keys first, not JSON, a bad escape) give nothing more: the call's
    end gives the rest of its text (`custom_input`) whole. `text` is what was given."""

    WRAPPER = re.compile(rf'\s*\{{\s*"{CUSTOM_INPUT}"\s*:\s*"')
    SPECIAL = re.compile(r'["\\]')
    ESCAPE = re.compile(r"u[dD][89abAB][0-9a-fA-F]{2}")  # a surrogate pair's first half, after its backslash

    def __init__(self) -> None:
        self.raw = ""
        self.text = ""
        self.at: int | None = None  # where the text's undecoded JSON begins, once the wrapper is known
        self.ended = False  # the string closed, or it cannot be read

    def add(self, piece: str) -> str:
        self.raw += piece
        if self.ended:
            return ""
        if self.at is None:
            begun = self.WRAPPER.match(self.raw)
            if begun is None:
                return ""
            self.at = begun.end()
        end = self._whole(self.at)
        try:
            text = orjson.loads(f'"{self.raw[self.at : end]}"') if end > self.at else ""
        except orjson.JSONDecodeError:
            self.ended = True
            return ""
        self.at = end
        self.text += text
        return str(text)

    def _whole(self, at: int) -> int:
        """Where the whole characters from `at` end: at the string's closing quote (it ended), or before an
        escape not yet whole."""
        raw = self.raw
        while (found := self.SPECIAL.search(raw, at)) is not None:
            at = found.start()
            if raw[at] == '"':
                self.ended = True
                return at
            size = 6 if raw[at + 1 : at + 2] == "u" else 2
            if self.ESCAPE.match(raw, at + 1):
                size = 12  # with its second half
            if at + size > len(raw):
                return at
            at += size
        return len(raw)


def custom_arguments(text: str) -> str:
    """A custom tool call's text as the arguments of the pipeline's function call."""
    return orjson.dumps({CUSTOM_INPUT: text}).decode()


def allowed_tools(
    tools: list[ToolSpec] | None, choice: str | dict[str, Any] | None
) -> tuple[list[ToolSpec] | None, str | dict[str, Any] | None]:
    """The tools and choice the pipeline gets. `{"type": "allowed_tools", "mode", "tools"}` narrows the
    tools offered to the function tools it names, with `mode` (`auto` or `required`) as the choice: what
    the model may call is the same, though OpenAI keeps the whole list in the prompt (for its cache)."""
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return tools, pipeline_choice(choice)
    named = choice.get("tools")
    names = (
        [t.get("name") if isinstance(t, dict) and t.get("type") == "function" else None for t in named]
        if isinstance(named, list)
        else None
    )
    return narrowed(
        tools,
        choice.get("mode"),
        names,
        param="tool_choice",
        what="tool_choice: allowed_tools",
        shape='[{"type": "function", "name": ...}, ...]',
    )


def narrowed(
    tools: list[ToolSpec] | None, mode: Any, names: list[Any] | None, *, param: str, what: str, shape: str
) -> tuple[list[ToolSpec], Literal["auto", "required"]]:
    """An allowed_tools choice, as each face spells it (`names`: the function names it lists, None where
    an entry is no function tool): the tools offered narrowed to those, and `mode` as the choice; a bad
    mode, no names or a name not offered is a 400 naming `param` (`what` and `shape` say it in the face's
    words)."""
    if mode not in ("auto", "required") or not names:
        raise InvalidRequest(
            f'{what} takes "mode" ("auto" or "required") and "tools" ({shape})',
            code="invalid_value",
            param=param,
        )
    given = {t.function.name for t in tools or []}
    for index, name in enumerate(names):
        if name not in given:
            raise InvalidRequest(
                f"{param}.tools.{index}: allowed tools must be function tools named in `tools` "
                f"({sorted(given)})",
                code="invalid_value",
                param=f"{param}.tools.{index}",
            )
    return [t for t in tools or [] if t.function.name in names], "auto" if mode == "auto" else "required"


def pipeline_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """`none` / `auto` / `required`, or `{"type": "function" or "custom", "name", "namespace"?}` as chat
    completions name it."""
    if choice is None or choice in ("none", "auto", "required"):
        return choice
    if (
        isinstance(choice, dict)
        and choice.get("type") in ("function", "custom")
        and isinstance(choice.get("name"), str)
    ):
        return {"type": "function", "function": {"name": flat_name(choice.get("namespace"), choice["name"])}}
    raise InvalidRequest(
        'tool_choice: must be "none", "auto", "required", {"type": "function", "name": ...} or '
        '{"type": "allowed_tools", ...} (built-in tools are not served here)',
        code="invalid_value",
        param="tool_choice",
    )
