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
    needed = ("/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/tasks", "/v1/admin/users")
    for path in (*needed, "/v1/admin/keys"):
        assert ("POST", path) in with_body
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert "messages" in chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], f"{method} {path} declares FastAPI's 422; errors are 400"
            if path.startswith(("/v1/admin", "/v1/chat", "/v1/embeddings", "/v1/messages", "/v1/tasks")):
                assert {"400", "401", "403", "404"} <= set(op["responses"]), f"{method} {path}"
    assert "429" in chat["responses"] and "504" in chat["responses"]
    embeddings = doc["paths"]["/v1/embeddings"]["post"]
    body = embeddings["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "input"} <= set(body["required"]) and len(body["properties"]["input"]["anyOf"]) == 4
    assert {"413", "429", "502", "503", "504"} <= set(embeddings["responses"])
    assert embeddings["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EmbeddingsResponse"
    }
    # each face declares its own error shape
    faces = ("/v1/chat/completions", "/v1/embeddings", "/v1/messages")
    refs = {
        p: _refs({k: v for k, v in doc["paths"][p]["post"]["responses"].items() if k != "200"}) for p in faces
    }
    assert refs["/v1/chat/completions"] == refs["/v1/embeddings"] == {"#/components/schemas/ErrorResponse"}
    assert refs["/v1/messages"] == {"#/components/schemas/AnthropicErrorResponse"}
