"""`switchyard classifier retrain --from-ledger`: ledger outcomes + stored features -> perhaps new heads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from switchyard.classifier import artifact
from switchyard.classifier.outcomes import guard, ledger, retrain, store
from switchyard.common.db import create_engine


async def retrain_from_ledger(
    records: Iterable[ledger.LedgerRecord],
    *,
    database_url: str,
    artifact_dir: Path | None,
    out: Path,
    holdout: float = 0.2,
    min_rows: int = 20,
    dry_run: bool = False,
    public: guard.Loader | None = None,
    max_public_drop: float = guard.MAX_DROP,
) -> retrain.Decision:
    """`public`: the public held-out split, read only when the ledger holdout promotes; the promoted heads
    must then lose at most `max_public_drop` of macro-F1 on it (guard.py). None: no such guard."""
    current = artifact.load(artifact_dir)
    engine = create_engine(database_url)
    try:
        await store.migrations().upgrade(database_url)
        stored = await store.load(
            engine,
            embedding_model_sha256=current.manifest["embedding_model_sha256"],
            features_version=current.input_version,
        )
    finally:
        await engine.dispose()
    found = ledger.outcomes(records)
    data = retrain.dataset(found, stored, current.labels)
    decision = retrain.retrain(current, data, holdout=holdout, min_rows=min_rows)
    if decision.promoted and public is not None:
        decision = guard.check(decision, current, public(), max_drop=max_public_drop)
    decision.report["classified_tasks_in_ledger"] = len(found)
    decision.report["tasks_with_stored_features"] = sum(
        1 for o in found if (o.tenant_id, o.task_id) in stored
    )
    if decision.promoted and not dry_run:
        artifact.save(out, decision.heads, _manifest(current, decision))
    return decision


def _manifest(current: Any, decision: retrain.Decision) -> dict[str, Any]:
    parent = dict(current.manifest)
    for key in ("weights_sha256", "version", "labels", "temperature"):
        parent.pop(key, None)
    parent["retrained_from_ledger"] = {
        "parent_version": current.version,
        "parent_weights_sha256": current.manifest.get("weights_sha256"),
        "parent_training_data_sha256": current.manifest.get("training_data_sha256"),
        "decision": decision.reasons,
        "holdout": decision.report,
        "note": "`metrics` are the parent's public held-out evaluation; the holdout above is the ledger's",
    }
    parent["training_data_sha256"] = decision.report.get("data_sha256", parent.get("training_data_sha256"))
    return parent
