"""Per-tenant digest keys on real SQLite and PostgreSQL: made once (also by two replicas at once), erased
with the organisation (crypto-shredding: the key's bytes leave the database, its digests become
unconfirmable, the ledger and its proofs stay exactly as they were), and the auditor's check of a prompt
against the tenant's own entries."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.audit import digest_check, proofs
from switchyard.audit.checkpoints import make_checkpoint
from switchyard.audit.db import migrations
from switchyard.audit.digests import CACHE_S, KeyErased, TenantKeys
from switchyard.audit.entries import draft_for
from switchyard.audit.models import DigestKey
from switchyard.audit.service import append_entries
from switchyard.audit.signing import parse_private_key, signer_from
from switchyard.audit.verify import verify_ledger
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import SwitchyardError
from switchyard.common.events import ChatMessage, ChatRequest, TaskSubmitted
from switchyard.common.ledger_rpc import DigestRequest
from tests.support.ledger import draft

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]
PROMPT = "fire Alice"


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[tuple[AsyncEngine, Sessions]]:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield engine, sessionmaker(engine)
    finally:
        await engine.dispose()


def _submitted(n: int, tenant: str, prompt: str = PROMPT) -> tuple[CloudEvent, TaskSubmitted]:
    payload = TaskSubmitted(
        task_id=f"t{n}",
        tenant_id=tenant,
        request=ChatRequest(messages=[ChatMessage(role="user", content=prompt)]),
        submitted_at=datetime.now(UTC),
    )
    return CloudEvent(id=f"evt-{n}", source="switchyard/gateway", type=payload.EVENT_TYPE, data={}), payload


async def _secret(sessions: Sessions, tenant: str) -> bytes | None:
    async with sessions() as session:
        return (await session.execute(select(DigestKey.secret).where(DigestKey.tenant_id == tenant))).scalar()


async def test_a_tenants_key_is_made_once_even_by_two_replicas_at_once(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    _, sessions = ledger
    one, two = TenantKeys(sessions), TenantKeys(sessions)
    keys = await asyncio.gather(*(k.for_digest("acme") for k in (one, two, one, two)))
    assert all(k is not None and k.secret == keys[0].secret for k in keys)  # type: ignore[union-attr]
    assert await _secret(sessions, "acme") == keys[0].secret  # type: ignore[union-attr]
    other = await TenantKeys(sessions).for_digest("globex")
    assert other is not None and other.secret != keys[0].secret  # type: ignore[union-attr]


async def test_erasing_shreds_the_key_and_the_ledger_still_verifies(
    ledger: tuple[AsyncEngine, Sessions], db_url: str, tmp_path: Path
) -> None:
    engine, sessions = ledger
    keys = TenantKeys(sessions)
    drafts = []
    for n, tenant in enumerate(("acme", "globex", "acme"), start=1):
        event, payload = _submitted(n, tenant)
        drafts.append(draft_for(event, payload, await keys.for_digest(tenant)))
    # an entry written before keyed digests: a plain SHA-256
    legacy = draft(4, tenant="acme", details={"prompt_sha256": hashlib.sha256(b"old one").hexdigest()})
    await append_entries(sessions, drafts=[*drafts, legacy])
    signer = signer_from(parse_private_key(("33" * 32).encode()), origin="ledger.test/keys")
    await make_checkpoint(sessions, signer=signer)

    async def ask(tenant: str, text: str, seq: int | None = None) -> dict[str, object]:
        return await digest_check.check(
            sessions, TenantKeys(sessions), DigestRequest(tenant_id=tenant, text=text, seq=seq)
        )

    mine = await ask("acme", PROMPT, 1)
    assert (mine["matches"], mine["algorithm"], mine["field"]) == (True, "hmac-sha256", "prompt_hmac_sha256")
    assert mine["digest"] == (await ask("acme", PROMPT))["digest"]
    assert (await ask("acme", "fire Bob", 1))["matches"] is False
    with pytest.raises(SwitchyardError) as theirs:
        await ask("acme", PROMPT, 2)
    assert theirs.value.code == "forbidden"
    old = await ask("acme", "old one", 4)
    assert (old["matches"], old["algorithm"], old["field"]) == (True, "sha256", "prompt_sha256")
    with pytest.raises(SwitchyardError) as none:
        await ask("globex", PROMPT, 999)
    assert none.value.code == "not_found"

    proof_before = await proofs.inclusion(sessions, seq=1)
    acme_secret = await _secret(sessions, "acme")
    assert acme_secret is not None
    assert await keys.erase("acme") is True
    assert await keys.erase("acme") is False  # idempotent (a redelivered erasure event)
    assert await _secret(sessions, "acme") is None
    assert await TenantKeys(sessions).for_digest("acme") is None  # never made again
    assert await keys.for_digest("acme") is None
    with pytest.raises(KeyErased):
        await ask("acme", PROMPT, 1)
    with pytest.raises(KeyErased):
        await ask("acme", PROMPT)
    assert (await ask("globex", PROMPT, 2))["matches"] is True  # another tenant's key is untouched
    # the chain, the tree and the proofs do not change
    assert await proofs.inclusion(sessions, seq=1) == proof_before
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 4 and not report.notes
    if engine.dialect.name == "sqlite":  # the key's bytes are gone from the files, not only from the row
        db = Path(db_url.split("///", 1)[1])
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        assert files and not any(acme_secret in p.read_bytes() for p in files)


async def test_a_tenant_erased_before_it_had_a_key_never_gets_one(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    _, sessions = ledger
    assert await TenantKeys(sessions).erase("initech") is False
    assert await TenantKeys(sessions).for_digest("initech") is None
    with pytest.raises(KeyErased):
        await TenantKeys(sessions).for_check("initech")


async def test_a_replica_stops_digesting_with_a_key_another_erased_within_the_cache_time(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    _, sessions = ledger
    now = [0.0]
    mine = TenantKeys(sessions, clock=lambda: now[0])
    assert await mine.for_digest("acme") is not None
    await TenantKeys(sessions).erase("acme")  # the replica that recorded the erasure
    with pytest.raises(KeyErased):  # confirming never uses what a replica remembers
        await mine.for_check("acme")
    now[0] = CACHE_S + 0.1
    assert await mine.for_digest("acme") is None
