"""`switchyard up`: how many processes of each service the embedded run starts, and how they differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.cli.devstack import START_ORDER, Stack, StackSettings

pytestmark = pytest.mark.unit


def test_replicas_of_each_scalable_service_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCHYARD_EXECUTOR_REPLICAS", "3")
    monkeypatch.setenv("SWITCHYARD_CLASSIFIER_REPLICAS", "2")
    stack = Stack(StackSettings(var_dir=tmp_path))
    assert {name: stack.replicas(name) for name in START_ORDER} == {
        "audit": 1,
        "billing": 1,
        "executor": 3,
        "router": 1,
        "classifier": 2,
        "gateway": 1,
    }
    index = START_ORDER.index("classifier")
    first, second = (stack.service_env(index, "classifier", replica) for replica in (1, 2))
    # two processes of one service: their own instance names (pings, leases) and /metrics ports
    assert (first["SWITCHYARD_INSTANCE"], second["SWITCHYARD_INSTANCE"]) == ("classifier-1", "classifier-2")
    ports = {
        int(stack.service_env(i, n, r)["SWITCHYARD_METRICS_PORT"])
        for i, n in enumerate(START_ORDER)
        if n != "gateway"
        for r in range(1, stack.replicas(n) + 1)
    }
    assert len(ports) == 1 + 1 + 3 + 1 + 2  # every non-HTTP process has its own


def test_one_of_each_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("EXECUTOR", "GATEWAY", "CLASSIFIER"):
        monkeypatch.delenv(f"SWITCHYARD_{name}_REPLICAS", raising=False)
    stack = Stack(StackSettings(var_dir=tmp_path))
    assert all(stack.replicas(name) == 1 for name in START_ORDER)


def test_the_embedded_run_reserves_smaller_object_stores_unless_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SWITCHYARD_FILES_BUCKET_BYTES", raising=False)
    monkeypatch.setenv("SWITCHYARD_BATCH_VECTORS_BYTES", str(5 * 1024**3))
    env = Stack(StackSettings(var_dir=tmp_path)).service_env(START_ORDER.index("gateway"), "gateway")
    assert env["SWITCHYARD_FILES_BUCKET_BYTES"] == str(1024**3)  # the deployment's default is 4 GiB
    assert env["SWITCHYARD_BATCH_VECTORS_BYTES"] == str(5 * 1024**3)  # the operator's own, kept


def test_each_bus_process_gets_its_own_nats_user_and_the_siem_exporter_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SWITCHYARD_NATS_URL", raising=False)
    monkeypatch.setenv("SWITCHYARD_NATS_USER", "inherited")
    stack = Stack(StackSettings(var_dir=tmp_path))
    outcomes = stack.service_env(0, "classifier-outcomes")
    assert outcomes["SWITCHYARD_NATS_USER"] == "classifier"
    assert outcomes["SWITCHYARD_NATS_PASSWORD_FILE"].endswith("nats-auth/classifier.password")
    exporter = stack.service_env(0, "siem-exporter")  # it reads the ledger's database, never the bus
    assert not {k for k in exporter if k.startswith(("SWITCHYARD_NATS_USER", "SWITCHYARD_NATS_PASSWORD"))}
