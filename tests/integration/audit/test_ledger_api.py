"""Checkpoints and proofs from the audit service over NATS request/reply, and through the gateway's HTTP API
with tenant scoping: real processes, a real nats-server, SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.digests import TenantKeys
from switchyard.audit.entries import draft_for
from switchyard.audit.proof_check import check_document
from switchyard.audit.service import append_entries
from switchyard.audit.signing import parse_private_key, signer_from
from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import ChatMessage, ChatRequest, TaskSubmitted
from switchyard.gateway.db import migrations as gateway_migrations
from switchyard.gateway.tenants import create_api_key, create_tenant, create_user
from tests.support.bus_services import BusService
from tests.support.ledger import draft
from tests.support.procs import service_process

pytestmark = pytest.mark.integration

SEED = "77" * 32
ORIGIN = "ledger.test/api"


async def _wait_checkpoint(nc: nats.NATS, size: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        reply = orjson.loads((await nc.request(subjects.LEDGER_RPC_CHECKPOINT, b"{}", timeout=5)).data)
        if reply.get("tree_size", 0) >= size:
            return reply  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no checkpoint of size {size}: {reply}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def stack(nats_server: NatsServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[dict[str, object]]:
    await gateway_migrations().upgrade(sqlite_url)
    await audit_migrations().upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = sessionmaker(engine)
    acme = await create_tenant(sessions, name="acme")
    globex = await create_tenant(sessions, name="globex")
    # An organisation's key without a user acts as a member (`inference` only): it may have checkpoints
    # and consistency proofs, but reading entries (inclusion proofs) takes `audit:read` or `admin`.
    key_acme_member, _ = await create_api_key(sessions, tenant_id=acme.id, name="k")
    auditors = []
    for tenant in (acme, globex):
        user = await create_user(
            sessions, tenant_id=tenant.id, email=f"audit@{tenant.name}.test", role="auditor"
        )
        key, _ = await create_api_key(
            sessions, tenant_id=tenant.id, name="a", user_id=user.id, scopes="audit:read"
        )
        auditors.append(key)
    key_acme, key_globex = auditors
    await engine.dispose()
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHYARD_AUDIT_SIGNING_KEY": SEED,
        "SWITCHYARD_AUDIT_LOG_ORIGIN": ORIGIN,
        "SWITCHYARD_AUDIT_CHECKPOINT_INTERVAL_S": "0.3",
    }
    audit = await BusService("audit", env=env, log_path=tmp_path / "audit.log").start()
    port = free_port()
    try:
        with service_process(
            "switchyard.gateway",
            env={**env, "SWITCHYARD_HTTP_PORT": str(port)},
            log_path=tmp_path / "gateway.log",
            ready_url=f"http://127.0.0.1:{port}/healthz",
        ):
            yield {
                "base": f"http://127.0.0.1:{port}",
                "acme": (acme.id, key_acme),
                "globex": (globex.id, key_globex),
                "acme_member": key_acme_member,
                "url": sqlite_url,
                "logs": [tmp_path / "audit.log", tmp_path / "gateway.log"],
            }
    finally:
        audit.stop()


async def test_proofs_over_nats_and_http_with_tenant_scope(
    stack: dict[str, object], nats_server: NatsServer
) -> None:
    acme_id, acme_key = stack["acme"]  # type: ignore[misc]
    globex_id, globex_key = stack["globex"]  # type: ignore[misc]
    engine = create_engine(str(stack["url"]))
    sessions = sessionmaker(engine)
    await append_entries(
        sessions, drafts=[draft(n, tenant=acme_id if n % 2 else globex_id) for n in range(1, 41)]
    )
    trusted = signer_from(parse_private_key(SEED.encode()), origin=ORIGIN).key
    nc = await nats.connect(nats_server.url)
    try:
        first = await _wait_checkpoint(nc, 40)
        await append_entries(sessions, drafts=[draft(n, tenant=acme_id) for n in range(41, 61)])
        second = await _wait_checkpoint(nc, 60)
        # Directly over NATS (another system can do this, no HTTP involved).
        request = orjson.dumps({"seq": 7, "tenant_id": acme_id})
        doc = orjson.loads((await nc.request(subjects.LEDGER_RPC_INCLUSION, request, timeout=5)).data)
        assert check_document(doc, trusted=trusted).pinned
        refused = orjson.loads(
            (
                await nc.request(
                    subjects.LEDGER_RPC_INCLUSION, orjson.dumps({"seq": 8, "tenant_id": acme_id})
                )
            ).data
        )
        assert refused["error"]["code"] == "forbidden"
        invalid = orjson.loads((await nc.request(subjects.LEDGER_RPC_INCLUSION, b'{"seq": 0}')).data)
        assert invalid["error"]["code"] == "invalid_request"
        # was globex's entry 8 for anyone who left the tenant out, and entry 1 for `true`
        for body in ({"seq": 8}, {"seq": True, "tenant_id": acme_id}, {"seq": "7", "tenant_id": acme_id}):
            refused = orjson.loads((await nc.request(subjects.LEDGER_RPC_INCLUSION, orjson.dumps(body))).data)
            assert refused["error"]["code"] == "invalid_request", (body, refused)
        huge = b'{"seq": 1180591620717411303424, "tenant_id": "' + acme_id.encode() + b'"}'  # 2**70
        past = orjson.loads((await nc.request(subjects.LEDGER_RPC_INCLUSION, huge)).data)
        assert past["error"]["code"] == "invalid_request"
    finally:
        await nc.close()
        await engine.dispose()

    base = str(stack["base"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        acme = {"Authorization": f"Bearer {acme_key}"}
        globex = {"Authorization": f"Bearer {globex_key}"}
        member = {"Authorization": f"Bearer {stack['acme_member']}"}
        assert (await http.get("/v1/ledger/checkpoint")).status_code == 401
        # The role table: an auditor reads the ledger (was 403: the endpoints asked for `inference`), a
        # member calls models and may not read the organisation's entries (was allowed).
        refused = await http.get("/v1/ledger/proof/inclusion", params={"seq": 7}, headers=member)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_permissions", (
            refused.text
        )
        assert (await http.get("/v1/ledger/checkpoint", headers=member)).status_code == 200
        cp = await http.get("/v1/ledger/checkpoint", headers=acme)
        assert cp.status_code == 200 and check_document(cp.json(), trusted=trusted)
        mine = await http.get("/v1/ledger/proof/inclusion", params={"seq": 7}, headers=acme)
        assert mine.status_code == 200, mine.text
        assert "entry 7" in check_document(mine.json(), trusted=trusted).summary
        theirs = await http.get("/v1/ledger/proof/inclusion", params={"seq": 8}, headers=acme)
        assert theirs.status_code == 403 and theirs.json()["error"]["code"] == "forbidden"
        assert (
            await http.get("/v1/ledger/proof/inclusion", params={"seq": 8}, headers=globex)
        ).status_code == 200
        missing = await http.get("/v1/ledger/proof/inclusion", params={"seq": 9999}, headers=acme)
        assert missing.status_code == 404
        for params in ({"seq": 2**70}, {"seq": 7, "tree_size": 2**64}):  # past a BIGINT: was a 500
            huge = await http.get("/v1/ledger/proof/inclusion", params=params, headers=acme)
            assert huge.status_code == 400, huge.text
        pinned = await http.get(
            "/v1/ledger/proof/inclusion", params={"seq": 7, "tree_size": first["tree_size"]}, headers=acme
        )
        assert pinned.json()["tree_size"] == first["tree_size"]
        grown = await http.get(
            "/v1/ledger/proof/consistency",
            params={"from": first["tree_size"], "to": second["tree_size"]},
            headers=globex,
        )
        assert (
            grown.status_code == 200
            and "is a prefix" in check_document(grown.json(), trusted=trusted).summary
        )
        bad = await http.get("/v1/ledger/proof/consistency", params={"from": 0}, headers=acme)
        assert bad.status_code == 400
        backwards = {"from": second["tree_size"], "to": first["tree_size"]}  # both exist: not a 404
        bad = await http.get("/v1/ledger/proof/consistency", params=backwards, headers=acme)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request", bad.text


async def test_a_tenants_auditor_checks_a_prompt_against_its_entries_over_http(
    stack: dict[str, object],
) -> None:
    """`POST /v1/ledger/digest`: the keyed digest of a text under the caller's organisation's key, and
    whether one of its entries holds it; only for a key that may read the ledger, only its own entries."""
    acme_id, acme_key = stack["acme"]  # type: ignore[misc]
    globex_id, globex_key = stack["globex"]  # type: ignore[misc]
    prompt = "fire Alice ünïcode"
    engine = create_engine(str(stack["url"]))
    try:
        sessions = sessionmaker(engine)
        keys = TenantKeys(sessions)  # the same table the audit service reads
        drafts = []
        for n, tenant in ((1, acme_id), (2, globex_id)):
            payload = TaskSubmitted(
                task_id=f"t{n}",
                tenant_id=tenant,
                request=ChatRequest(messages=[ChatMessage(role="user", content=prompt)]),
                submitted_at=datetime.now(UTC),
            )
            event = CloudEvent(id=f"e{n}", source="switchyard/gateway", type=payload.EVENT_TYPE, data={})
            drafts.append(draft_for(event, payload, await keys.for_digest(tenant)))
        await append_entries(sessions, drafts=drafts)
    finally:
        await engine.dispose()

    async with httpx.AsyncClient(base_url=str(stack["base"]), timeout=10) as http:
        acme = {"Authorization": f"Bearer {acme_key}"}
        globex = {"Authorization": f"Bearer {globex_key}"}
        member = {"Authorization": f"Bearer {stack['acme_member']}"}
        ok = await http.post("/v1/ledger/digest", json={"text": prompt, "seq": 1}, headers=acme)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert (body["matches"], body["algorithm"], body["field"], body["tenant_id"]) == (
            True,
            "hmac-sha256",
            "prompt_hmac_sha256",
            acme_id,
        )
        alone = await http.post("/v1/ledger/digest", json={"text": prompt}, headers=acme)
        assert alone.json()["digest"] == body["digest"] and "matches" not in alone.json()
        guess = await http.post("/v1/ledger/digest", json={"text": "fire Bob", "seq": 1}, headers=acme)
        assert guess.status_code == 200 and guess.json()["matches"] is False
        # globex's own digest of the same text differs (its key), and acme's entry is not its to check
        theirs = await http.post("/v1/ledger/digest", json={"text": prompt}, headers=globex)
        assert theirs.json()["digest"] != body["digest"]
        refused = await http.post("/v1/ledger/digest", json={"text": prompt, "seq": 1}, headers=globex)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        denied = await http.post("/v1/ledger/digest", json={"text": prompt}, headers=member)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_permissions"
        assert (await http.post("/v1/ledger/digest", json={"text": prompt})).status_code == 401
        for bad in (
            {},
            {"text": "a", "input": ["a"]},
            {"text": "a", "seq": True},
            {"text": "a", "tenant_id": "x"},
        ):
            wrong = await http.post("/v1/ledger/digest", json=bad, headers=acme)
            assert wrong.status_code == 400 and wrong.json()["error"]["type"] == "invalid_request_error", (
                bad,
                wrong.text,
            )
        none = await http.post("/v1/ledger/digest", json={"input": ["a"], "seq": 1}, headers=acme)
        assert (
            none.status_code == 400 and "holds no embedding input digest" in none.json()["error"]["message"]
        )
        missing = await http.post("/v1/ledger/digest", json={"text": prompt, "seq": 99}, headers=acme)
        assert missing.status_code == 404
    logs = " ".join(path.read_text(errors="replace") for path in stack["logs"])  # type: ignore[attr-defined]
    assert "fire Alice" not in logs and "fire Bob" not in logs
