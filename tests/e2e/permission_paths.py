"""The gateway's paths that touch the bus beyond a chat completion, driven over HTTP as a user of `make run`
does: files, batches (OpenAI's and Anthropic's), stored responses and conversations, the task API,
embeddings, feedback, usage and ledger queries (RPCs to billing and audit), webhooks, the throttle, users,
keys and organisations changed, and an organisation's erasure. Each step checks its own answer; the test
that runs them (test_bus_permissions_paths.py) checks that the bus refused nothing on the way."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

EMBEDDING_MODEL = "local/all-minilm-l6-v2"
CHAT = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]}


def _ok(reply: httpx.Response, *codes: int) -> Any:
    assert reply.status_code in (codes or (200,)), (reply.request.method, reply.request.url, reply.text[:500])
    return reply.json() if reply.content else None


def _until(check: Any, timeout: float = 180.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every)


def files_and_batches(http: httpx.Client) -> None:
    lines = [
        {"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
        for i in range(2)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    made = _ok(
        http.post("/v1/files", files={"file": ("in.jsonl", body)}, data={"purpose": "batch"}), 200, 201
    )
    file_id = made["id"]
    assert any(f["id"] == file_id for f in _ok(http.get("/v1/files"))["data"])
    _ok(http.get(f"/v1/files/{file_id}"))
    assert http.get(f"/v1/files/{file_id}/content").content == body
    ask = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch = _ok(http.post("/v1/batches", json=ask), 200, 201)
    _ok(http.get("/v1/batches"))
    done = _until(lambda: (b := _ok(http.get(f"/v1/batches/{batch['id']}")))["status"] == "completed" and b)
    output = http.get(f"/v1/files/{done['output_file_id']}/content")
    assert output.status_code == 200 and output.text.count("custom_id") == 2, output.text[:300]
    # one more, cancelled at once
    again = _ok(http.post("/v1/batches", json=ask), 200, 201)
    _ok(http.post(f"/v1/batches/{again['id']}/cancel"))
    _until(lambda: _ok(http.get(f"/v1/batches/{again['id']}"))["status"] in ("cancelled", "completed"))
    _ok(http.delete(f"/v1/files/{file_id}"))
    assert http.get(f"/v1/files/{file_id}").status_code == 404


def message_batches(http: httpx.Client) -> None:
    params = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]}
    made = _ok(http.post("/v1/messages/batches", json={"requests": [{"custom_id": "m1", "params": params}]}))
    bid = made["id"]
    _ok(http.get("/v1/messages/batches"))
    _until(lambda: _ok(http.get(f"/v1/messages/batches/{bid}"))["processing_status"] == "ended")
    results = http.get(f"/v1/messages/batches/{bid}/results")
    assert results.status_code == 200 and "m1" in results.text, results.text[:300]
    _ok(http.delete(f"/v1/messages/batches/{bid}"))


def responses_and_conversations(http: httpx.Client) -> None:
    first = _ok(
        http.post("/v1/responses", json={"model": "auto", "input": "Say hi.", "max_output_tokens": 16})
    )
    _ok(http.get(f"/v1/responses/{first['id']}"))
    _ok(http.get(f"/v1/responses/{first['id']}/input_items"))
    follow = {
        "model": "auto",
        "input": "Again.",
        "previous_response_id": first["id"],
        "max_output_tokens": 16,
    }
    second = _ok(http.post("/v1/responses", json=follow))
    _ok(http.delete(f"/v1/responses/{second['id']}"))
    conversation = _ok(http.post("/v1/conversations", json={"metadata": {"k": "v"}}))
    cid = conversation["id"]
    item = {"type": "message", "role": "user", "content": "Remember: blue."}
    _ok(http.post(f"/v1/conversations/{cid}/items", json={"items": [item]}))
    _ok(
        http.post(
            "/v1/responses",
            json={"model": "auto", "input": "Colour?", "conversation": cid, "max_output_tokens": 16},
        )
    )
    items = _ok(http.get(f"/v1/conversations/{cid}/items"))["data"]
    _ok(http.get(f"/v1/conversations/{cid}/items/{items[0]['id']}"))
    _ok(http.delete(f"/v1/conversations/{cid}"))


def task_api_and_embeddings(http: httpx.Client) -> None:
    task = _ok(http.post("/v1/tasks", json=CHAT), 200, 202)
    _until(lambda: _ok(http.get(f"/v1/tasks/{task['id']}"))["status"] in ("completed", "failed"))
    slow = _ok(http.post("/v1/tasks", json={**CHAT, "max_tokens": 200}), 200, 202)
    _ok(http.delete(f"/v1/tasks/{slow['id']}"), 200, 202)
    vectors = _ok(http.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": ["one", "two"]}))
    assert len(vectors["data"]) == 2
    texts = [f"ticket {n}: my invoice is wrong" for n in range(200)]  # over the inline limit: the store
    large = _ok(http.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": texts}))
    assert len(large["data"]) == 200
    with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
        assert streamed.status_code == 200
        assert "[DONE]" in "".join(streamed.iter_text())
    _ok(http.post("/v1/feedback", json={"task_id": task["id"], "rating": "good"}), 202)


def queries(http: httpx.Client) -> None:
    for path in ("/v1/usage", "/v1/usage/statement", "/v1/usage/forecast", "/v1/usage/savings"):
        _ok(http.get(path))
    checkpoint = http.get("/v1/ledger/checkpoint")  # audit answered: a checkpoint, or none made yet
    assert checkpoint.status_code == 200 or checkpoint.json()["error"]["code"] == "proof_unavailable"
    _ok(http.get("/healthz"))
    _ok(http.get("/readyz", params={"strict": "true"}))


def administration(http: httpx.Client) -> None:
    hook = _ok(http.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/hook"}), 200, 201)
    _ok(http.get("/v1/admin/webhooks"))
    _ok(http.delete(f"/v1/admin/webhooks/{hook['id']}"), 200, 204)
    _ok(http.put("/v1/admin/throttle", json={"requests_per_min": 100000}))
    _ok(http.get("/v1/admin/throttle"))
    _ok(http.put("/v1/admin/throttle", json={"requests_per_min": None}))
    name = f"perm-{uuid.uuid4().hex[:8]}"
    org = _ok(http.post("/v1/admin/organizations", json={"name": name, "admin_email": f"a@{name}.test"}), 201)
    org_id = org["organization"]["id"]
    _ok(http.patch(f"/v1/admin/organizations/{org_id}", json={"plan": "pro", "monthly_budget_usd": 5}))
    key = _ok(http.post("/v1/admin/keys", json={"name": "perm-key"}), 200, 201)
    key_id = key.get("id") or key["key"]["id"]
    _ok(http.post(f"/v1/admin/keys/{key_id}/rotate", json={"grace_s": 0}), 200, 201)
    _ok(http.delete(f"/v1/admin/keys/{key_id}"), 200, 204)
    _ok(http.post(f"/v1/admin/organizations/{org_id}/erase"), 200, 202)


def embedding_batch(http: httpx.Client) -> None:
    """A batch line whose vectors are too large for its result event: kept in the batch vectors' store by
    the executor, read back by the gateway into the output file."""
    texts = [f"ticket {n}: my invoice is wrong" for n in range(200)]  # 200 x 384 floats: over 256 KiB
    line = {
        "custom_id": "e1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": EMBEDDING_MODEL, "input": texts},
    }
    made = _ok(
        http.post(
            "/v1/files", files={"file": ("e.jsonl", json.dumps(line).encode())}, data={"purpose": "batch"}
        ),
        200,
        201,
    )
    ask = {"input_file_id": made["id"], "endpoint": "/v1/embeddings", "completion_window": "24h"}
    batch = _ok(http.post("/v1/batches", json=ask), 200, 201)
    done = _until(lambda: (b := _ok(http.get(f"/v1/batches/{batch['id']}")))["status"] == "completed" and b)
    output = http.get(f"/v1/files/{done['output_file_id']}/content")
    assert output.status_code == 200 and output.text.count('"embedding":[') == 200, output.text[:300]


def response_cache(http: httpx.Client) -> None:
    """The response cache (`SWITCHYARD_CACHE_ENABLED=true`): an answer stored, then reused exactly and by
    meaning (the semantic cache embeds the question)."""
    ask = {**CHAT, "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    _ok(http.post("/v1/chat/completions", json=ask))
    again = http.post("/v1/chat/completions", json=ask)
    assert again.status_code == 200 and again.headers.get("x-switchyard-cache") == "hit", again.headers
    near = {**CHAT, "messages": [{"role": "user", "content": "What's the capital of France?"}]}
    _ok(http.post("/v1/chat/completions", json=near))
