"""An entry's provenance (where its event came from, format v2) on real SQLite and PostgreSQL: covered by its
hash, so `switchyard ledger verify` names an entry whose provenance was edited, removed or given afterwards,
while a ledger mixing entries written before (none) and after verifies."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.audit import checkpoints, proofs
from switchyard.audit.proof_check import check_document
from switchyard.audit.service import append_entries
from switchyard.audit.signing import parse_private_key, signer_from
from switchyard.audit.verify import verify_ledger
from switchyard.common import subjects
from tests.integration.audit.test_ledger_db import Sessions, _cli_verify, _drop_guards, _sql, draft, ledger

pytestmark = pytest.mark.integration
__all__ = ["ledger"]  # the fixture

TOKEN = subjects.tenant_token("acme")
SCOPED = {"subject": subjects.scoped(subjects.TASK_SUBMITTED, "acme"), "by": [f"integrator:{TOKEN}"]}


async def _mixed(sessions: Sessions) -> None:
    """Entries 1-3 as written before provenance was recorded, 4-6 with it."""
    await append_entries(sessions, drafts=[draft(i) for i in range(1, 4)])
    await append_entries(sessions, drafts=[draft(i, provenance=SCOPED) for i in range(4, 7)])


@pytest.mark.parametrize(
    ("seq", "value"),
    [
        # a scoped integrator's task passed off as the gateway's
        (5, """'{"by":["service:gateway"],"subject":"switchyard.task.submitted"}'"""),
        (5, "NULL"),  # removed: the entry passed off as one written before
        (2, """'{"by":["service:gateway"],"subject":"switchyard.task.submitted"}'"""),  # given afterwards
    ],
)
async def test_verify_names_an_entry_whose_provenance_was_tampered_with(
    ledger: tuple[AsyncEngine, Sessions], db_url: str, seq: int, value: str
) -> None:
    engine, sessions = ledger
    await _mixed(sessions)
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 6
    await _drop_guards(engine)
    await _sql(engine, f"UPDATE ledger_entries SET provenance = {value} WHERE seq = {seq}")
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and problem.seq == seq and "altered" in problem.reason
    bad = await asyncio.to_thread(_cli_verify, db_url)
    assert bad.returncode == 1 and f"BROKEN at seq {seq} (event evt-{seq:04d})" in bad.stderr, bad.stderr


async def test_an_inclusion_proof_shows_the_provenance_it_proves(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    """What the API and the CLI hand out for an entry (`GET /v1/ledger/proof/inclusion`, `ledger proof
    inclusion`) carries its bytes: a v2 entry's provenance, checked against the signed root; a v1 entry's
    bytes as they were."""
    _, sessions = ledger
    await _mixed(sessions)
    signer = signer_from(parse_private_key(b"33" * 32), origin="ledger.test/acme")
    await checkpoints.make_checkpoint(sessions, signer=signer)
    new = await proofs.inclusion(sessions, seq=5, tenant_id="acme")
    check_document(orjson.loads(orjson.dumps(new)), trusted=signer.key)
    entry = orjson.loads(base64.b64decode(new["entry"]))
    assert (entry["v"], entry["provenance"]) == (2, SCOPED)
    old = orjson.loads(base64.b64decode((await proofs.inclusion(sessions, seq=2))["entry"]))
    assert old["v"] == 1 and "provenance" not in old
