"""The Files and Batch APIs, attacked from another organisation with everything a careless client or an
attacker could learn of the victim's batch: its ids (input file, output and error files, the batch), list
cursors set to them, and the task ids of its lines (derived from the organisation, the batch and the
line: computed here with the victim's organisation id, as if it had leaked). None of it answers with the
victim's data or changes it; the victim's prompts and results never appear."""

from __future__ import annotations

import time

import httpx
import pytest

from switchyard.gateway.batches import render
from tests.integration.gateway.harness import auth
from tests.security.conftest import Tenants

pytestmark = pytest.mark.e2e
SECRET = "victim secret plan"


def _finished_batch(t: Tenants) -> dict[str, object]:
    with httpx.Client(base_url=t.stack.base_url, headers=auth(t.victim.keys["admin"]), timeout=30) as c:
        deadline = time.monotonic() + 60
        while (batch := c.get(f"/v1/batches/{t.ids['batch_id']}").json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline, batch
            time.sleep(0.5)
    assert batch["status"] == "completed" and batch["output_file_id"], batch
    return batch


def test_another_organisation_reaches_nothing_of_a_batch(tenants: Tenants) -> None:
    t = tenants
    batch = _finished_batch(t)
    victim_files = [t.ids["file_id"], str(batch["output_file_id"])]
    if batch.get("error_file_id"):
        victim_files.append(str(batch["error_file_id"]))
    line_task = render.task_id(t.victim.id, t.ids["batch_id"], 0)
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=t.stack.base_url, headers=auth(t.attacker.keys["admin"]), timeout=30) as c:
        for file_id in victim_files:
            for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
                r = c.request(method, f"/v1/files/{file_id}{path}")
                assert (r.status_code, r.json()["error"]["code"]) == (404, "file_not_found"), r.text
                answers.append(r)
            for order in ("asc", "desc"):  # a cursor of the victim's: the attacker's own files, if any
                r = c.get("/v1/files", params={"after": file_id, "order": order})
                assert r.status_code == 200 and not set(victim_files) & {f["id"] for f in r.json()["data"]}
                answers.append(r)
            made = c.post(
                "/v1/batches",
                json={
                    "input_file_id": file_id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            )
            error = made.json()["error"]
            assert (made.status_code, error["code"], error["param"]) == (
                404,
                "file_not_found",
                "input_file_id",
            )
            answers.append(made)
        listed = c.get("/v1/batches", params={"after": t.ids["batch_id"], "limit": 100})
        assert listed.status_code == 200 and t.ids["batch_id"] not in listed.text
        for r in (c.get(f"/v1/tasks/{line_task}"), c.delete(f"/v1/tasks/{line_task}")):
            assert r.status_code == 404, r.text
            answers.append(r)
        answers.append(listed)
    for r in answers:
        assert SECRET not in r.text and "victim-line" not in r.text, r.text
        if r.status_code >= 400:  # a documented refusal: status, type, code, message, request id
            error = r.json()["error"]
            assert error["type"] and error["code"] and error["message"] and error["request_id"], r.text
    with httpx.Client(base_url=t.stack.base_url, headers=auth(t.victim.keys["admin"]), timeout=30) as c:
        for file_id in victim_files:  # still there, unchanged
            assert c.get(f"/v1/files/{file_id}").status_code == 200
        output = c.get(f"/v1/files/{batch['output_file_id']}/content").text
        assert "victim-line" in output
        assert c.get(f"/v1/tasks/{line_task}").json()["status"] == "completed"  # the id is the line's task
