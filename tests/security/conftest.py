"""One platform (`switchyard up`, fake OpenAI upstream with a secret-looking key) for the security tests,
and two organisations on it: the victim's resources and the attacker's key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.chaos.stack import ChaosStack
from tests.integration.gateway.harness import Org, auth, make_org


@dataclass
class Tenants:
    stack: ChaosStack
    victim: Org
    attacker: Org
    ids: dict[str, str] = field(default_factory=dict)  # path parameter name -> the victim's resource id
    doc: dict[str, Any] = field(default_factory=dict)  # the OpenAPI document the gateway serves


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    stack = ChaosStack(tmp_path_factory.mktemp("security"), siem=False).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def tenants(platform: ChaosStack) -> Tenants:
    victim = asyncio.run(make_org(platform.db_url, "victim-org", roles=("admin",)))
    attacker = asyncio.run(make_org(platform.db_url, "attacker-org", roles=("admin",)))
    made = Tenants(platform, victim, attacker)
    made.ids["org_id"] = victim.id  # the attacker may not erase it: only the platform operator may
    with httpx.Client(base_url=platform.base_url, headers=auth(victim.keys["admin"]), timeout=30) as c:
        task = c.post(
            "/v1/tasks",
            json={
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "victim secret plan"}],
            },
        )
        assert task.status_code == 202, task.text
        made.ids["task_id"] = task.json()["id"]
        user = c.post("/v1/admin/users", json={"email": "someone@victim.test"})
        assert user.status_code == 201, user.text
        made.ids["user_id"] = user.json()["id"]
        key = c.post("/v1/admin/keys", json={"name": "victim-key", "user_id": made.ids["user_id"]})
        assert key.status_code in (200, 201), key.text
        made.ids["key_id"] = key.json()["id"]
        hook = c.post("/v1/admin/webhooks", json={"url": "https://hooks.victim.test/budget"})
        made.ids["webhook_id"] = (
            hook.json().get("id", "wh_missing") if hook.status_code < 300 else "wh_missing"
        )
        line = {
            "custom_id": "victim-line",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "victim secret plan"}],
            },
        }
        upload = c.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("victim.jsonl", json.dumps(line).encode() + b"\n", "application/jsonl")},
        )
        assert upload.status_code == 200, upload.text
        made.ids["file_id"] = made.ids["input_file_id"] = upload.json()["id"]
        batch = c.post(
            "/v1/batches",
            json={
                "input_file_id": made.ids["file_id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert batch.status_code == 200, batch.text
        made.ids["batch_id"] = batch.json()["id"]
        ask = {
            "model": "auto",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "victim secret plan"}],
        }
        message_batch = c.post(
            "/v1/messages/batches", json={"requests": [{"custom_id": "victim-request", "params": ask}]}
        )
        assert message_batch.status_code == 200, message_batch.text
        made.ids["message_batch_id"] = made.ids["before_id"] = made.ids["after_id"] = message_batch.json()[
            "id"
        ]
        answer = c.post(
            "/v1/responses", json={"model": "auto", "max_output_tokens": 16, "input": "victim secret plan"}
        )
        assert answer.status_code == 200, answer.text
        made.ids["response_id"] = made.ids["previous_response_id"] = answer.json()["id"]
        conversation = c.post(
            "/v1/conversations", json={"items": [{"role": "user", "content": "victim secret plan"}]}
        )
        assert conversation.status_code == 200, conversation.text
        made.ids["conversation_id"] = conversation.json()["id"]
        made.ids["item_id"] = c.get(f"/v1/conversations/{made.ids['conversation_id']}/items").json()["data"][
            0
        ]["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/v1/tasks/{made.ids['task_id']}").json().get("status") == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        made.doc = c.get("/openapi.json").json()
    return made
