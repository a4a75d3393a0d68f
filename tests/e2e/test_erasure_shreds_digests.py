"""An organisation's prompts are in the ledger by a digest under its own key; its auditor confirms a prompt
over HTTP; erasing the organisation (`POST /v1/admin/organizations/{id}/erase`) deletes that key in the
audit service, so nobody can confirm the prompt any more, while the entry stays byte for byte what it was
(`switchyard ledger verify` is not run here: another test of the session's stack alters a row on purpose)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e


def _one(stack: RunningStack, sql: str, *args: object) -> tuple[object, ...] | None:
    con = sqlite3.connect(stack.var_dir / "switchyard.db")
    try:
        row = con.execute(sql, args).fetchone()
        return tuple(row) if row is not None else None
    finally:
        con.close()


def test_erasing_an_organisation_makes_its_prompt_digests_unconfirmable(
    stack: RunningStack, tmp_path: Path
) -> None:
    operator = {"Authorization": f"Bearer {stack.api_key}"}  # the platform's own organisation
    made = httpx.post(
        f"{stack.base_url}/v1/admin/organizations",
        json={"name": f"leaver-{uuid.uuid4().hex[:6]}", "admin_email": "boss@leaver.test"},
        headers=operator,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    org_id, admin = (
        made.json()["organization"]["id"],
        {"Authorization": f"Bearer {made.json()['key']['key']}"},
    )
    prompt = f"fire Alice {uuid.uuid4().hex[:8]}"
    asked = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": prompt}]},
        headers=admin,
        timeout=120,
    )
    assert asked.status_code == 200, asked.text
    resource = f"task/{asked.headers['x-switchyard-task-id']}"
    found = wait_for(
        lambda: _one(
            stack,
            "SELECT seq, details, entry_hash FROM ledger_entries WHERE resource = ? AND action = ?",
            resource,
            "task.submit",
        )
    )
    seq, details, entry_hash = found  # type: ignore[misc]
    held = json.loads(details)  # type: ignore[arg-type]
    assert "prompt_sha256" not in held and hashlib.sha256(prompt.encode()).hexdigest() not in details  # type: ignore[operator]

    check = httpx.post(
        f"{stack.base_url}/v1/ledger/digest", json={"text": prompt, "seq": seq}, headers=admin, timeout=30
    )
    assert check.status_code == 200 and check.json()["matches"] is True, check.text
    assert check.json()["digest"] == held["prompt_hmac_sha256"]

    erased = httpx.post(
        f"{stack.base_url}/v1/admin/organizations/{org_id}/erase", headers=operator, timeout=60
    )
    assert erased.status_code == 200, erased.text
    wait_for(
        lambda: _one(stack, "SELECT 1 FROM ledger_digest_keys WHERE tenant_id = ? AND secret IS NULL", org_id)
    )
    text = tmp_path / "prompt.txt"
    text.write_text(prompt)
    late = stack.cli("ledger", "digest", "--tenant", org_id, "--text-file", str(text), "--seq", str(seq))
    assert late.returncode == 2 and "erased" in late.stderr, late
    after = _one(stack, "SELECT details, entry_hash FROM ledger_entries WHERE seq = ?", seq)
    assert after == (details, entry_hash)
