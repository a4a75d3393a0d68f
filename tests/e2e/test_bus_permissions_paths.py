"""`make run` runs every service under least-privilege NATS permissions (`cli/bus_permissions.py`): the
gateway's paths that reach beyond a chat completion, driven over HTTP on a stack started as `switchyard
up` starts it (with the response cache, the SIEM exporter and the outcome recorder on), are refused
nothing: nats-server logs no publish or subscription violation, and no service's log reports one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from switchyard.common import subjects
from tests.e2e import permission_paths as paths
from tests.e2e.conftest import RunningStack, start_stack, stop_stack, wait_for
from tests.support.guarded_bus import CLIENT_SAYS, SERVER_SAYS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cached_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    base = tmp_path_factory.mktemp("permissions")
    env = {"SWITCHYARD_CACHE_ENABLED": "true", "SWITCHYARD_CLASSIFIER_OUTCOME_TENANTS": '["perm-tenant"]'}
    running = start_stack(base / "var", base / "up.log", env=env)
    try:
        yield running
    finally:
        stop_stack(running)


def _refusals(logs: Path) -> list[str]:
    found = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(said in line for said in SERVER_SAYS) or CLIENT_SAYS in line.lower():
                found.append(f"{log.name}: {line[:300]}")
    return found


@pytest.mark.parametrize(
    "path",
    [
        paths.files_and_batches,
        paths.embedding_batch,
        paths.message_batches,
        paths.responses_and_conversations,
        paths.task_api_and_embeddings,
        paths.response_cache,
        paths.queries,
        paths.administration,
    ],
    ids=lambda p: p.__name__,
)
def test_the_gateways_paths_are_refused_nothing(
    cached_stack: RunningStack, path: Callable[[httpx.Client], None]
) -> None:
    logs = cached_stack.var_dir / "logs"
    assert (logs / "nats.log").exists() and (logs / "siem-exporter.log").exists()
    before = _refusals(logs)
    headers = {"Authorization": f"Bearer {cached_stack.api_key}"}
    with httpx.Client(base_url=cached_stack.base_url, headers=headers, timeout=120) as http:
        path(http)
    assert _refusals(logs) == before == []


def test_an_invalid_event_is_dead_lettered_by_each_consumer_refused_nothing(
    cached_stack: RunningStack,
) -> None:
    """Another system's malformed task (`operator` publishes it here): the classifier and the audit
    service each copy it to their dead letters; `switchyard dlq` lists them."""
    logs = cached_stack.var_dir / "logs"

    async def publish() -> None:
        nc = await nats.connect(cached_stack.nats_url)
        try:
            body = orjson.dumps(
                {"specversion": "1.0", "id": "bad-1", "type": "nonsense", "data": {"task_id": "t"}}
            )
            await nc.jetstream().publish(subjects.TASK_SUBMITTED, body)
        finally:
            await nc.close()

    asyncio.run(publish())

    def rejected_by() -> set[str]:
        listed = cached_stack.cli("dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return {
            str(x["service"])
            for x in map(json.loads, listed.stdout.splitlines())
            if x.get("event_id") == "bad-1"
        }

    assert wait_for(lambda: {"classifier", "audit"} <= rejected_by(), timeout=60)
    assert _refusals(logs) == []


def test_the_siem_exporter_exports_the_ledger_without_the_bus(cached_stack: RunningStack) -> None:
    """The SIEM exporter runs as part of the audit service (its user) but reads the ledger's database:
    it needs no right on the bus, and has none of its own."""
    headers = {"Authorization": f"Bearer {cached_stack.api_key}"}
    with httpx.Client(base_url=cached_stack.base_url, headers=headers, timeout=120) as http:
        paths.task_api_and_embeddings(http)
    exported = cached_stack.var_dir / "siem.jsonl"
    assert wait_for(lambda: exported.exists() and exported.read_text().count("\n") >= 3, timeout=60)
    assert _refusals(cached_stack.var_dir / "logs") == []


def test_the_replicas_follow_heads_the_operator_promotes(cached_stack: RunningStack) -> None:
    """`switchyard classifier promote` (and `retrain --publish`, which publishes the same way) runs as
    `operator`; every classifier replica, as `classifier`, watches the pointer, reads the heads' files and
    reports what it classifies with, which `--wait` waits for."""
    from switchyard.classifier import artifact

    folder = str(artifact.default_dir())
    promoted = cached_stack.cli(
        "classifier", "promote", "--artifact", folder, "--note", "perm-paths", "--wait", "60"
    )
    assert promoted.returncode == 0, promoted.stderr
    heads = cached_stack.cli("classifier", "heads", "--json")
    assert heads.returncode == 0 and "perm-paths" in heads.stdout, heads.stderr
    assert _refusals(cached_stack.var_dir / "logs") == []
