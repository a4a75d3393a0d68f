"""What the Anthropic face refuses by name before it reads a request: fields that ask for what is not
delivered (`UNSUPPORTED`), Anthropic's message threads (`ThreadsNotServed`, in the shape its SDK's tool
runner recovers from) and its built-in tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.schemas import Unsupported

Refusal = Callable[[dict[str, Any]], None]  # a 400 for what a request body asks that is not served


# Anthropic request fields that ask for what is not delivered (see `schemas.UNSUPPORTED`).
UNSUPPORTED: Unsupported = {
    "top_k": (lambda v: v is not None, "`top_k` is not passed to providers"),
    "mcp_servers": (lambda v: bool(v), "the MCP connector is not served: give the tools as `tools`"),
    "container": (lambda v: v is not None, "code execution containers are not served"),
}


class ThreadsNotServed(InvalidRequest):
    """Anthropic's message threads (`thread`: the API keeps the conversation, and a request continuing it
    sends only the new turns) are not served: Switchyard keeps no conversation, and routes each request to
    any model. Refused as Anthropic refuses a request it cannot thread (`error.details.error_code`
    `thread_unsupported_request`), on which the SDK's tool runner sends the whole conversation without
    `thread` from then on; sent on without it, a continuation would lack its history."""

    code = "unsupported_parameter"
    details = {"error_code": "thread_unsupported_request"}

    def __init__(self) -> None:
        super().__init__(
            "thread: message threads are not served (Switchyard keeps no conversation): send the whole "
            "conversation without `thread`",
            param="thread",
        )


def refuse_thread(raw: dict[str, Any]) -> None:
    if raw.get("thread") is not None:
        raise ThreadsNotServed()


def refuse_builtin_tools(raw: dict[str, Any]) -> None:
    """Anthropic's own tools (server tools such as `web_search_20250305`, and the schema-less ones its
    models are trained on, such as `bash_20250124`) are a 400 naming the tool's type: Switchyard routes
    to models of several providers, which know only tools given with a name and an input_schema."""
    tools = raw.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"tools.{i}.type: Anthropic's built-in tools ({kind!r}) are not served: give each tool as a "
                "custom tool, with a name, a description and an input_schema",
                code="unsupported_parameter",
                param=f"tools.{i}.type",
            )
