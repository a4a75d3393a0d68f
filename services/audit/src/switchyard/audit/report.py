"""A compliance report for one tenant and period: what happened, what failed, who changed what, and whether
the ledger that says so verifies (with the checkpoint an auditor can hold it to)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit import checkpoints
from switchyard.audit.chain import timestamp
from switchyard.audit.entries import FAILURE
from switchyard.audit.models import LedgerEntry
from switchyard.audit.note import VerifierKey
from switchyard.audit.service import utc
from switchyard.audit.verify import verify_ledger

REPORT_FORMAT = "switchyard.ledger.compliance_report.v1"
# Actions that change who may do what: keys, policy, tenants, users, admin operations.
ADMIN_PREFIXES = ("admin.", "key.", "api_key.", "policy.", "tenant.", "user.")
AUTH_FAILURE_PREFIXES = ("auth.",)
MAX_LISTED = 500


def is_admin(action: str) -> bool:
    return action.startswith(ADMIN_PREFIXES)


async def compliance_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str,
    start: datetime,
    end: datetime,
    trusted: Sequence[VerifierKey] = (),
) -> dict[str, Any]:
    """Entries of `tenant_id` that occurred in [start, end), and the verification of the whole ledger."""
    e = LedgerEntry
    scope = (e.tenant_id == tenant_id, e.occurred_at >= utc(start), e.occurred_at < utc(end))
    async with sessions() as session:
        grouped = (
            await session.execute(
                select(e.action, e.outcome, func.count(), func.min(e.seq), func.max(e.seq))
                .where(*scope)
                .group_by(e.action, e.outcome)
            )
        ).all()
        admin_rows = (
            await session.execute(
                select(e.seq, e.occurred_at, e.actor, e.action, e.resource, e.outcome, e.provenance)
                .where(*scope, _admin_filter())
                .order_by(e.seq)
                .limit(MAX_LISTED)
            )
        ).all()
    by_action: dict[str, dict[str, int]] = {}
    failures: dict[str, int] = {}
    seqs = [s for row in grouped for s in (row[3], row[4])]
    for action, outcome, count, _, _ in grouped:
        by_action.setdefault(action, {})[outcome] = count
        if outcome == FAILURE:
            failures[action] = count
    total = sum(sum(v.values()) for v in by_action.values())
    report = await verify_ledger(sessions, trusted=trusted)
    latest = await checkpoints.latest(sessions)
    auth_failures = sum(n for a, n in failures.items() if a.startswith(AUTH_FAILURE_PREFIXES))
    return {
        "format": REPORT_FORMAT,
        "tenant_id": tenant_id,
        "period": {"from": timestamp(start), "to": timestamp(end)},
        "entries": total,
        "first_seq": min(seqs) if seqs else None,
        "last_seq": max(seqs) if seqs else None,
        "by_action": dict(sorted(by_action.items())),
        "failures": {"total": sum(failures.values()), "auth_failures": auth_failures, "by_action": failures},
        "admin_changes": {
            "total": sum(n for a, counts in by_action.items() if is_admin(a) for n in counts.values()),
            "entries": [
                {
                    "seq": seq,
                    "occurred_at": timestamp(at),
                    "actor": actor,
                    "action": action,
                    "resource": resource,
                    "outcome": outcome,
                    # where the change's event came from (null: an entry written before it was recorded)
                    "provenance": None if provenance is None else orjson.loads(provenance),
                }
                for seq, at, actor, action, resource, outcome, provenance in admin_rows
            ],
        },
        "verification": {
            # not ok either when the entries verify but the stored tree that serves proofs does not
            "ok": report.ok and not report.notes,
            "entries_verified": report.entries,
            "checkpoints_verified": report.checkpoints,
            "keys_pinned": report.keys_pinned,
            "root_hash": report.root_hash,
            "problem": None
            if report.problem is None
            else {
                "seq": report.problem.seq,
                "event_id": report.problem.event_id,
                "reason": report.problem.reason,
            },
            "notes": report.notes,
            "covered_by_checkpoint": None if latest is None else checkpoints.document(latest),
        },
    }


def _admin_filter() -> Any:
    return or_(*(LedgerEntry.action.startswith(p) for p in ADMIN_PREFIXES))
