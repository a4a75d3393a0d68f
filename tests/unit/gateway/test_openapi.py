"""The OpenAPI document is complete: every endpoint that takes a body declares it, every error it can
return is declared in the one error model, and every reference resolves."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.gateway.app import create_app
from switchyard.gateway.config import GatewaySettings

pytestmark = pytest.mark.unit


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_openapi_document_is_complete() -> None:
    doc = create_app(GatewaySettings()).openapi()
    schemas = doc["components"]["schemas"]
    assert all(ref.rsplit("/", 1)[-1] in schemas for ref in _refs(doc))
    with_body = {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if "requestBody" in op
    }
    for needed in ("/v1/chat/completions", "/v1/messages", "/v1/tasks", "/v1/admin/users", "/v1/admin/keys"):
        assert ("POST", needed) in with_body
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert "messages" in chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], f"{method} {path} declares FastAPI's 422; errors are 400"
            if path.startswith(("/v1/admin", "/v1/chat", "/v1/messages", "/v1/tasks")):
                assert {"400", "401", "403", "404"} <= set(op["responses"]), f"{method} {path}"
    assert "429" in chat["responses"] and "504" in chat["responses"]
    # each face declares its own error shape
    refs = {p: _refs(doc["paths"][p]["post"]["responses"]) for p in ("/v1/chat/completions", "/v1/messages")}
    assert refs["/v1/chat/completions"] == {"#/components/schemas/ErrorResponse"}
    assert refs["/v1/messages"] == {"#/components/schemas/AnthropicErrorResponse"}
