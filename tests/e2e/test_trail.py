"""Every task leaves a trail: classified, routed with reasons, provider call, usage entry, audit entries in
the append-only ledger; `switchyard ledger verify` passes, and fails loudly when a row is changed."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e
TRAIL = ["task.submit", "task.classify", "task.route", "provider.call", "task.complete", "billing.usage"]


def _rows(stack: RunningStack, sql: str, *args: object) -> list[sqlite3.Row]:
    con = sqlite3.connect(stack.var_dir / "switchyard.db")
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _ask(stack: RunningStack) -> str:
    r = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        json={
            "model": "auto",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello to the auditors."}],
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-switchyard-task-id"]


def test_a_task_leaves_its_whole_trail(stack: RunningStack) -> None:
    task_id = _ask(stack)
    resource = f"task/{task_id}"

    def trail() -> list[str] | None:
        actions = [
            r["action"]
            for r in _rows(
                stack, "SELECT action FROM ledger_entries WHERE resource = ? ORDER BY seq", resource
            )
        ]
        return actions if all(a in actions for a in TRAIL) else None

    actions = wait_for(trail, timeout=30)
    assert actions is not None
    assert sorted(actions) == sorted(TRAIL), "each step once, nothing doubled"
    routed = _rows(
        stack, "SELECT details FROM ledger_entries WHERE resource = ? AND action = 'task.route'", resource
    )[0]
    details = json.loads(routed["details"])
    assert "local/smollm2-135m-instruct" in json.dumps(details), details

    # where each came from, as the bus stored it: who NATS lets publish there (`switchyard up`'s users)
    came = {
        r["action"]: json.loads(r["provenance"])
        for r in _rows(stack, "SELECT action, provenance FROM ledger_entries WHERE resource = ?", resource)
    }
    answered = ["service:classifier", "service:executor", "service:gateway", "service:router"]
    assert came == {
        "task.submit": {"subject": "switchyard.task.submitted", "by": ["service:gateway", "integrator:all"]},
        "task.classify": {"subject": "switchyard.task.classified", "by": ["service:classifier"]},
        "task.route": {"subject": "switchyard.task.routed", "by": ["service:router"]},
        "provider.call": {"subject": "switchyard.provider.call", "by": ["service:executor"]},
        "task.complete": {"subject": came["task.complete"]["subject"], "by": answered},
        "billing.usage": {"subject": "switchyard.billing.usage", "by": ["service:billing"]},
    }
    assert came["task.complete"]["subject"].startswith("switchyard.result.")
    assert came["task.complete"]["subject"].endswith(f".{task_id}")

    usage = _rows(stack, "SELECT * FROM usage_entries WHERE task_id = ?", task_id)
    assert len(usage) == 1
    assert usage[0]["model"] == "local/smollm2-135m-instruct"
    assert usage[0]["completion_tokens"] > 0 and float(usage[0]["cost_usd"]) == 0.0

    # The SIEM exporter `switchyard up` started (the e2e stack sets a JSON Lines destination) sent the trail.
    siem = stack.var_dir / "siem.jsonl"
    assert f"SIEM       exporting the ledger to file://{siem} as ocsf" in stack.output.read_text()

    def exported() -> list[dict[str, object]] | None:
        path = stack.var_dir / "siem.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        mine = [json.loads(line) for line in lines if task_id in line]
        return mine if len(mine) >= len(TRAIL) else None

    records = wait_for(exported, timeout=30)
    assert isinstance(records, list) and len(records) == len(TRAIL), "each entry once"
    assert all(r["class_uid"] == 6003 for r in records)
    assert {r["api"]["operation"]: r["unmapped"]["provenance"] for r in records} == came

    everything = " ".join(r["details"] for r in _rows(stack, "SELECT details FROM ledger_entries"))
    assert stack.api_key not in everything and "hello to the auditors" not in everything, (
        "no secrets or prompts"
    )


def test_ledger_rows_cannot_be_changed_and_verify_catches_tampering(stack: RunningStack) -> None:
    _ask(stack)
    ok = stack.cli("ledger", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact" in ok.stdout.lower() or "ok" in ok.stdout.lower(), ok.stdout

    con = sqlite3.connect(stack.var_dir / "switchyard.db")
    with pytest.raises(sqlite3.DatabaseError):
        con.execute("UPDATE ledger_entries SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError):
        con.execute("DELETE FROM ledger_entries WHERE seq = 2")
    # An attacker with the database file can drop the guard; verification must still see the change.
    triggers = [
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='ledger_entries'"
        )
    ]
    saved = [
        r[0]
        for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type='trigger' AND tbl_name='ledger_entries'"
        )
    ]
    for name in triggers:
        con.execute(f'DROP TRIGGER "{name}"')
    event_id = con.execute("SELECT event_id FROM ledger_entries WHERE seq = 3").fetchone()[0]
    con.execute("UPDATE ledger_entries SET details = replace(details, 'task', 'tusk') WHERE seq = 3")
    for sql in saved:
        con.execute(sql)
    con.commit()
    con.close()

    bad = stack.cli("ledger", "verify")
    assert bad.returncode != 0
    report = bad.stdout + bad.stderr
    assert "3" in report and event_id in report, report
