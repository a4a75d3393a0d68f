"""`switchyard classifier retrain --from-ledger` as an operator runs it: a real SQLite ledger and feature
store, a real nats-server. A head the ledger promotes is published for every replica, unless it loses on
the public held-out split; the next retraining starts from the heads in force on the bus."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.entries import EntryDraft
from switchyard.audit.service import append_entries
from switchyard.classifier import artifact, features, promotion
from switchyard.classifier.classify import Classifier
from switchyard.classifier.outcomes import store
from switchyard.cli.main import main
from switchyard.cli.processes import NatsServer
from switchyard.common.db import create_engine

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WHO = ("my landlord", "the new manager", "our twins", "the museum guide", "a taxi driver", "my aunt")
WHAT = ("is arriving tomorrow", "lost the keys again", "loves old films", "cannot find the station")
INTO = ("French", "German", "Spanish")


def prompts() -> list[str]:
    return [
        f"Translate into {lang}: {who.capitalize()} {act}." for who in WHO for act in WHAT for lang in INTO
    ]


async def outcomes(url: str, texts: list[str], classifier: Classifier) -> None:
    """acme's users relabel every task `extraction` (the shipped heads disagree); the feature store holds
    each task's input vector, as the outcome recorder stores it."""
    await audit_migrations().upgrade(url)
    await store.migrations().upgrade(url)
    heads = classifier.heads
    engine = create_engine(url)
    try:
        emb = classifier.embedder.embed(texts)
        drafts = []
        for i, text in enumerate(texts):
            await store.record(
                engine, tenant_id="acme", task_id=f"t{i}",
                vector=np.concatenate([emb.vectors[i], features.lexical(text)]),
                embedding_model_sha256=heads.manifest["embedding_model_sha256"],
                features_version=heads.input_version,
            )  # fmt: skip
            at = T0 + timedelta(seconds=i)
            for action, details in (
                ("task.classify", {"task_id": f"t{i}", "type": "writing", "model_version": "heads-8+x"}),
                ("task.feedback", {"task_id": f"t{i}", "rating": "bad", "task_type": "extraction"}),
            ):
                drafts.append(
                    EntryDraft(
                        event_id=f"{action}-{i}", occurred_at=at, tenant_id="acme", actor="api_key:k",
                        action=action, resource=f"task/t{i}", outcome="success", details=details,
                    )
                )  # fmt: skip
        await append_entries(async_sessionmaker(engine), drafts=drafts)
    finally:
        await engine.dispose()


def public_pool(path: Path, texts: list[str], labels: list[str]) -> Path:
    """A pool whose held-out split (source bbh) is these prompts with these labels."""
    rows = [
        {"id": f"p{i}", "source": "bbh", "prompt": t, "label_type": label}
        for i, (t, label) in enumerate(zip(texts, labels, strict=True))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def retrain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(["classifier", "retrain", "--from-ledger", "--json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def test_a_promotion_is_published_unless_the_public_split_says_it_got_worse(
    nats_server: NatsServer,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SWITCHYARD_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("SWITCHYARD_CLASSIFIER_ARTIFACT_DIR", raising=False)
    classifier = Classifier.load()
    texts = prompts()
    asyncio.run(outcomes(sqlite_url, texts, classifier))
    # the public split: prompts like acme's, labelled as the shipped heads read them (macro-F1 1.0)
    pool = public_pool(tmp_path / "pool.jsonl", texts, [p.type for p in classifier.predict(texts)])
    common = ["--ledger-db", sqlite_url, "--nats-url", nats_server.url, "--public-data", str(pool)]
    out = tmp_path / "heads-new"

    code, report, _ = retrain(capsys, *common, "--out", str(out))
    assert code == 0 and not report["promoted"], report["reasons"]
    assert report["type"]["candidate"]["macro_f1"] > report["type"]["current"]["macro_f1"]  # the ledger's say
    public = report["public_heldout"]
    assert public["current"] == 1.0 and public["candidate"] < 0.99 and public["n"] == len(texts)
    assert str(report["reasons"][-1]).startswith("not promoted: public held-out macro-F1 1.0 -> ")
    assert not out.exists()
    assert asyncio.run(_live(nats_server.url)) is None

    # a margin that lets it through: written, and put in force, the shipped heads kept to roll back to
    code, report, err = retrain(capsys, *common, "--out", str(out), "--max-public-drop", "1")
    assert code == 0 and report["promoted"], report["reasons"]
    promoted = artifact.load(out)
    live = asyncio.run(_live(nats_server.url))
    assert live is not None and live.version == promoted.version == "heads-9"
    assert live.weights_sha256 == promoted.manifest["weights_sha256"]
    assert [b.version for b in live.before] == ["heads-8"] and live.note == "retrain --from-ledger"
    assert "published: heads-9 in force" in err

    # the next retraining judges candidates against the heads in force, not the shipped ones
    code, report, _ = retrain(capsys, *common, "--dry-run", "--no-public-guard")
    assert code == 0 and report["type"]["current"]["accuracy"] == 1.0
    code, report, _ = retrain(capsys, *common, "--dry-run", "--no-public-guard", "--no-publish")
    assert code == 0 and report["type"]["current"]["accuracy"] < 0.5  # the folder's (shipped) heads


def test_a_missing_public_split_is_said_before_the_ledger_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--ledger-db", "sqlite+aiosqlite:////nonexistent/l.db", "--no-publish", "--dry-run"]
    code = main(["classifier", "retrain", "--from-ledger", *argv, "--public-data", "/nonexistent/pool.jsonl"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(
        "retrain: the public held-out split /nonexistent/pool.jsonl is not there"
    )


async def _live(url: str) -> promotion.Promoted | None:
    import nats

    nc = await nats.connect(url)
    try:
        return (await promotion.live(nc.jetstream()))[0]
    finally:
        await nc.close()
