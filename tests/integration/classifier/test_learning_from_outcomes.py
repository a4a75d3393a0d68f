"""Learning from outcomes end to end: tasks classified on the bus, feedback through the gateway's HTTP API,
the audit service's ledger, the opt-in feature store (its own process), then `retrain --from-ledger`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import numpy as np
import orjson
import pytest
from sqlalchemy import func, select

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.models import LedgerEntry
from switchyard.classifier import artifact
from switchyard.classifier.outcomes import retrain, store
from switchyard.classifier.outcomes.models import OutcomeFeatures
from switchyard.classifier.outcomes.offline import retrain_from_ledger
from switchyard.cli.classifier_cmd import _ledger_records
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine
from switchyard.common.events import (
    AdminActionRecorded,
    ChatRequest,
    Classification,
    TaskClassified,
    TaskCompleted,
    TaskSubmitted,
)
from switchyard.common.events.tasks import Usage
from tests.integration.gateway.harness import auth, gateways, make_org
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration

SUBJECTS = ("my landlord", "the new manager", "our twins", "the museum guide", "a taxi driver", "my aunt")
ACTS = ("is arriving tomorrow", "lost the keys again", "loves old films", "cannot find the station")
LANGS = ("French", "German", "Spanish")


SPANISH = "Escribe un poema corto sobre el mar y las olas para mi madre, que vive en la costa."


def _prompts(n: int) -> list[str]:
    combos = itertools.cycle(itertools.product(SUBJECTS, ACTS, LANGS))
    return [
        f"Translate into {lang}: {who.capitalize()} {act}." for who, act, lang in itertools.islice(combos, n)
    ]


def _classified(tenant: str, task_id: str, prompt: str, predicted: str) -> TaskClassified:
    task = TaskSubmitted(
        task_id=task_id,
        tenant_id=tenant,
        request=ChatRequest(messages=[{"role": "user", "content": prompt}]),
        submitted_at=datetime.now(UTC),
    )
    c = Classification(
        type=predicted,
        confidence=0.6,
        complexity=0.3,
        urgency=0.4,
        model_version="heads-test",
        latency_ms=3.0,
    )  # type: ignore[arg-type]
    return TaskClassified(task=task, classification=c)


async def _wait_for(engine, stmt, want: int, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            got = (await conn.execute(stmt)).scalar_one()
        if got >= want:
            return
        assert time.monotonic() < deadline, f"{got} of {want} rows after {timeout} s"
        await asyncio.sleep(0.2)


@pytest.fixture
def gateway(nats_server: NatsServer, sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    with gateways(nats_server, sqlite_url, tmp_path) as (base,):
        yield base


async def test_feedback_through_the_ledger_retrains_and_promotes_a_head(
    gateway: str, nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> None:
    n, base = 60, gateway
    if True:
        acme = await make_org(sqlite_url, "acme")
        other = await make_org(sqlite_url, "other")
        env = {
            "SWITCHYARD_NATS_URL": nats_server.url,
            "SWITCHYARD_DATABASE_URL": sqlite_url,
            "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        }
        audit = BusService(
            "audit", env={**env, "SWITCHYARD_AUDIT_SIGNING_KEY": "22" * 32}, log_path=tmp_path / "a.log"
        )
        recorder = BusService(
            "classifier-outcomes",
            module="switchyard.classifier.outcomes",
            env={**env, "SWITCHYARD_CLASSIFIER_OUTCOME_TENANTS": f'["{acme.id}"]'},
            log_path=tmp_path / "recorder.log",
        )
        await audit_migrations().upgrade(sqlite_url)
        await audit.start()
        await recorder.start(timeout=90)
        engine = create_engine(sqlite_url)
        nc = await nats.connect(nats_server.url)
        try:
            publisher = bus.EventPublisher(nc.jetstream(), source="test/classifier")
            prompts = _prompts(n)
            for i, prompt in enumerate(prompts):
                await publisher.publish(_classified(acme.id, f"t{i}", prompt, "writing"), tenant_id=acme.id)
                done = TaskCompleted(
                    task_id=f"t{i}", tenant_id=acme.id, model="local/small", provider="local", tier="cheap",
                    content="...", finish_reason="stop", usage=Usage(prompt_tokens=9, completion_tokens=9),
                    attempts=2 if i % 3 == 0 else 1, latency_ms=5.0, completed_at=datetime.now(UTC),
                )  # fmt: skip
                await publisher.publish(
                    done, subject=subjects.result_subject(acme.id, f"t{i}"), tenant_id=acme.id
                )
            # in Spanish: stored with the flag that sends it to the other-scripts head (no outcome: unused)
            await publisher.publish(_classified(acme.id, "t-es", SPANISH, "writing"), tenant_id=acme.id)
            # a tenant that did not opt in: recorded in the ledger, never in the feature store
            await publisher.publish(_classified(other.id, "t0", prompts[0], "writing"), tenant_id=other.id)

            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                for i in range(n):  # acme's users: these are extraction tasks in their book
                    body = {
                        # the task id, or the id of the answer the client holds
                        "task_id": [f"t{i}", f"chatcmpl-t{i}", f"msg_t{i}"][i % 3],
                        "rating": "bad",
                        "task_type": "extraction",
                        "reason": "wrong_type",
                    }
                    r = await http.post("/v1/feedback", json=body, headers=auth(acme.keys["admin"]))
                    assert r.status_code == 202, r.text
                    assert r.json()["task_type"] == "extraction" and r.json()["id"]
                # another organisation rating acme's task: no such task in its organisation, nothing kept
                body = {"task_id": "t59", "rating": "good", "task_type": "chitchat"}
                theirs = await http.post("/v1/feedback", json=body, headers=auth(other.keys["admin"]))
                assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "task_not_found")
                unknown = {"task_id": "t-none", "rating": "good"}
                nothing = await http.post("/v1/feedback", json=unknown, headers=auth(acme.keys["admin"]))
                assert (nothing.status_code, nothing.json()["error"]["param"]) == (404, "task_id")
                assert nothing.json()["error"]["message"] == "no finished task 't-none' in this organisation"
                # a task still queued (no classifier runs here) is rated once it has finished
                chat = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
                queued = await http.post("/v1/tasks", json=chat, headers=auth(acme.keys["admin"]))
                assert queued.status_code == 202, queued.text
                early = {"task_id": queued.json()["id"], "rating": "good"}
                soon = await http.post("/v1/feedback", json=early, headers=auth(acme.keys["admin"]))
                assert (soon.status_code, soon.json()["error"]["code"]) == (409, "task_not_finished")
                assert soon.json()["error"]["message"] == (
                    f"task '{queued.json()['id']}' has not finished; rate it once it has"
                )
                bad = await http.post(
                    "/v1/feedback", json={"task_id": "t1", "rating": "meh"}, headers=auth(acme.keys["admin"])
                )
                assert bad.status_code in (400, 422)
                assert (
                    await http.post("/v1/feedback", json={"task_id": "t1", "rating": "good"})
                ).status_code == 401

            feedback_rows = (
                select(func.count()).select_from(LedgerEntry).where(LedgerEntry.action == "task.feedback")
            )
            await _wait_for(engine, feedback_rows, n)
            await _wait_for(engine, select(func.count()).select_from(OutcomeFeatures), n + 1)
            async with engine.connect() as conn:
                tenants = set((await conn.execute(select(OutcomeFeatures.tenant_id))).scalars())
                flagged = (
                    await conn.execute(select(OutcomeFeatures.task_id).where(OutcomeFeatures.other_language))
                ).scalars()
                assert list(flagged) == ["t-es"]
                details = (
                    (
                        await conn.execute(
                            select(LedgerEntry.details).where(LedgerEntry.action == "task.feedback")
                        )
                    )
                    .scalars()
                    .all()
                )
            assert tenants == {acme.id}
            assert all("Translate" not in d for d in details)  # the ledger never holds the prompt
            kept = [orjson.loads(d) for d in details]
            relabeled = [d for d in kept if d.get("rating") == "bad" and d.get("task_type") == "extraction"]
            assert len(relabeled) == len(kept) == n  # the refused ratings left no trace

            current = artifact.load()
            records = await _ledger_records(sqlite_url)
            decision = await retrain_from_ledger(
                records, database_url=sqlite_url, artifact_dir=None, out=tmp_path / "heads-new"
            )
            assert decision.report["classified_tasks_in_ledger"] == n + 2
            assert decision.report["tasks_with_stored_features"] == n + 1
            assert decision.report["holdout_rows"] == 12
            typ = decision.report["type"]
            assert typ["current"]["accuracy"] < 0.5, "precondition: the shipped heads disagree with acme"
            assert decision.promoted, decision.reasons
            assert typ["candidate"]["macro_f1"] > typ["current"]["macro_f1"]
            promoted = artifact.load(tmp_path / "heads-new")
            assert promoted.version == retrain.next_version(current.version)
            lineage = promoted.manifest["retrained_from_ledger"]
            assert lineage["parent_version"] == current.version and lineage["decision"] == decision.reasons

            # the organisation erased (`switchyard org erase`): its stored vectors go, another's stay
            await store.record(
                engine, tenant_id=other.id, task_id="kept", vector=np.zeros(3), embedding_model_sha256="m",
                features_version="v",
            )  # fmt: skip
            erased = AdminActionRecorded(
                action="organization.erased", tenant_id=acme.id, target_type="organization",
                target_id=acme.id, at=datetime.now(UTC),
            )  # fmt: skip
            await publisher.publish(erased, tenant_id=acme.id, event_subject=acme.id)
            acme_rows = select(func.count()).where(OutcomeFeatures.tenant_id == acme.id)
            deadline = time.monotonic() + 30
            async with engine.connect() as conn:
                while (await conn.execute(acme_rows)).scalar_one() and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                assert (await conn.execute(acme_rows)).scalar_one() == 0, (
                    "acme's vectors outlived its erasure"
                )
            removed = await store.purge(engine, retention=timedelta(0))
            assert removed == 1  # the other organisation's row
        finally:
            await nc.close()
            await engine.dispose()
            recorder.stop()
            audit.stop()
