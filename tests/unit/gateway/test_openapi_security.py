"""Every authenticated endpoint declares what key guessing and SSO add: 401 (with the token codes), 429
(too many failed authentications) and 503 (the identity provider's keys); inference endpoints declare the
guardrails' 400 and 413 codes."""

from __future__ import annotations

import pytest

from switchyard.gateway.app import create_app
from switchyard.gateway.config import GatewaySettings

pytestmark = pytest.mark.unit

AUTHENTICATED = ("/v1/admin", "/v1/chat", "/v1/messages", "/v1/tasks", "/v1/models")
INFERENCE = ("/v1/chat/completions", "/v1/messages", "/v1/tasks")


def test_authenticated_endpoints_declare_lockout_and_sso_errors() -> None:
    doc = create_app(GatewaySettings()).openapi()
    checked = 0
    for path, ops in doc["paths"].items():
        if not path.startswith(AUTHENTICATED):
            continue
        for method, op in ops.items():
            responses = op["responses"]
            assert {"401", "429", "503"} <= set(responses), f"{method} {path}"
            assert "token_expired" in responses["401"]["description"], f"{method} {path}"
            assert "too_many_auth_failures" in responses["429"]["description"], f"{method} {path}"
            checked += 1
    assert checked >= 15
    for path in INFERENCE:
        post = doc["paths"][path]["post"]["responses"]
        assert "prompt_injection_detected" in post["400"]["description"]
        assert "pii_detected" in post["400"]["description"]
        assert "prompt_too_large" in post["413"]["description"]
