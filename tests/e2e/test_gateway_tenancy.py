"""Tenancy on the stack `make run` starts: the development key administers the development
organisation, a member it creates gets a real answer through the Anthropic SDK and the task API, and
loses access the moment its key is revoked."""

from __future__ import annotations

import time

import anthropic
import httpx
import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def test_dev_admin_creates_a_member_who_uses_every_face(stack: RunningStack) -> None:
    admin = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.base_url, timeout=120) as c:
        org = c.get("/v1/admin/organization", headers=admin).json()
        assert org["name"] == "dev" and org["platform"] is True
        user = c.post("/v1/admin/users", json={"email": "e2e@example.com", "plan": "pro"}, headers=admin)
        assert user.status_code == 201, user.text
        made = c.post(
            "/v1/admin/keys", json={"name": "e2e", "user_id": user.json()["id"]}, headers=admin
        ).json()
        key = made["key"]
        assert made["scopes"] == ["inference"]
        assert c.get("/v1/admin/users", headers={"Authorization": f"Bearer {key}"}).status_code == 403

        client = anthropic.Anthropic(base_url=stack.base_url, api_key=key, max_retries=0, timeout=120)
        message = client.messages.create(model="auto", max_tokens=40, messages=QUESTION)  # type: ignore[arg-type]
        assert "paris" in message.content[0].text.lower(), message.content[0].text  # type: ignore[union-attr]

        task = c.post(
            "/v1/tasks",
            json={"model": "auto", "max_tokens": 40, "messages": QUESTION, "n": 2},
            headers={"x-api-key": key},
        )
        assert task.status_code == 202
        deadline = time.monotonic() + 120
        while (state := c.get(f"/v1/tasks/{task.json()['id']}", headers={"x-api-key": key}).json())[
            "status"
        ] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert state["status"] == "completed" and state["result"]["usage"]["completion_tokens"] > 0
        others = state["result"]["other_choices"]  # the second answer asked for (`n`)
        assert len(others) == 1 and others[0]["content"] and others[0]["finish_reason"] in ("stop", "length")

        assert c.delete(f"/v1/admin/keys/{made['id']}", headers=admin).status_code == 200
        assert c.get("/v1/models", headers={"x-api-key": key}).status_code == 401
