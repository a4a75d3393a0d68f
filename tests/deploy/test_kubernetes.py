"""deploy/k8s, validated offline: kubernetes-validate --strict for every built-in kind; KEDA's ScaledObject (a
CRD the tool has no schema for) against a schema of the fields we use; and the wiring checked against code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from switchyard.common import subjects
from switchyard.gateway.config import GatewaySettings
from tests.deploy.grace import DRAIN_S, running_work_s, stop_grace_s

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VERSION = "1.37"
CRDS = {("keda.sh/v1alpha1", "ScaledObject")}
BUILD_FILES = {"kustomization.yaml"}
SECRET_TEMPLATES = "secrets.yaml"  # what to create out of band; never applied by the kustomization

# keda.sh/v1alpha1 ScaledObject: the fields these manifests use (KEDA 2.x), unknown keys rejected.
_BEHAVIOR_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": _BEHAVIOR_RULES, "scaleDown": _BEHAVIOR_RULES},
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {"type": "object", "required": ["name"]},
                        },
                    },
                },
            },
        },
    },
}
# The nats-jetstream scaler's parameters (KEDA docs): all strings; unknown ones are a typo.
NATS_JETSTREAM_METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"],
    "properties": {
        k: {"type": "string"}
        for k in (
            "natsServerMonitoringEndpoint",
            "account",
            "stream",
            "consumer",
            "lagThreshold",
            "activationLagThreshold",
            "useHttps",
        )
    },
}


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in BUILD_FILES:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _manifests() if doc["kind"] == kind]


def test_builtin_kinds_validate_strictly() -> None:
    checked = 0
    for _, doc in _manifests():
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        # raises SchemaNotFoundError for a kind it does not know: a built-in kind must never be skipped
        kubernetes_validate.validate(doc, VERSION, strict=True)
        checked += 1
    assert checked >= 20


def test_the_cli_agrees_with_strict_mode() -> None:
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name not in BUILD_FILES]
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", VERSION, *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("WARN")]
    assert all("ScaledObject" in line for line in warnings), warnings  # only the CRD is unknown to the tool


def test_strict_validation_can_fail() -> None:
    deployment = _of_kind("Deployment")[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replicaz": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_keda_scaled_object_scales_the_executor_on_its_consumer_lag() -> None:
    (scaled,) = _of_kind("ScaledObject")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "switchyard-executor"
    assert any(d["metadata"]["name"] == "switchyard-executor" for d in _of_kind("Deployment"))
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "nats-jetstream"
    jsonschema.validate(trigger["metadata"], NATS_JETSTREAM_METADATA)
    assert trigger["metadata"]["stream"] == subjects.EXECUTOR_CONSUMER.stream == "SWITCHYARD"
    assert trigger["metadata"]["consumer"] == subjects.EXECUTOR_CONSUMER.durable == "executor"
    broken = {**scaled, "spec": {**spec, "maxReplicas": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_every_service_has_probes_resources_and_a_disruption_budget() -> None:
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in _of_kind("Deployment")}
    assert set(deployments) == set(subjects.SERVICES)
    budgets = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in _of_kind("PodDisruptionBudget")
    }
    assert set(budgets) == set(subjects.SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        (container,) = pod["containers"]
        assert container["readinessProbe"] and container["livenessProbe"], name
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"] for e in container["env"]}
        assert "SWITCHYARD_DATABASE_URL" in env and "SWITCHYARD_INSTANCE" in env
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if name == "gateway":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        else:
            assert container["readinessProbe"]["exec"]["command"][:4] == [
                "python",
                "-m",
                "switchyard.common.healthcheck",
                name,
            ]
            # not an httpGet of /metrics, which its own thread answers with the event loop wedged: the
            # check that also reads the loop's heartbeat there
            assert container["livenessProbe"]["exec"]["command"] == [
                "python",
                "-m",
                "switchyard.common.healthcheck",
                name,
                "--liveness",
                "--timeout",
                "3",
            ], name
            assert container["livenessProbe"]["timeoutSeconds"] >= 5, name
        # replicas are owned by the autoscalers where there is one
        assert ("replicas" in deployment["spec"]) == (name not in ("gateway", "executor")), name


def _pre_stop_s(container: dict[str, Any]) -> float:
    """How long the container's preStop hook sleeps before the kubelet sends SIGTERM (0: none)."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return float(command[1])


def _unready_s(container: dict[str, Any]) -> float:
    """How long the gateway goes on serving after SIGTERM, unready (SWITCHYARD_STOP_UNREADY_S), before its
    stop grace starts."""
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return float(env.get("SWITCHYARD_STOP_UNREADY_S", 0))


def test_running_work_finishes_before_a_replica_is_stopped() -> None:
    """On a rolling restart or a scale-down, a replica lets what is running finish (its stop grace covers
    an executor's task deadline and a gateway's request timeout) and is not killed first (the pod's grace
    period covers the preStop hook, the stop grace and the drain after it)."""
    for deployment in _of_kind("Deployment"):
        name = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        grace = stop_grace_s({e["name"]: e["value"] for e in container["env"] if "value" in e})
        assert grace >= running_work_s(name), name
        before_grace = _pre_stop_s(container) + _unready_s(container)
        assert pod["terminationGracePeriodSeconds"] >= before_grace + grace + DRAIN_S, name


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, size in units.items():
        if value.endswith(suffix):
            return int(value.removesuffix(suffix)) * size
    return int(value)


def test_the_gateways_temporary_directory_holds_the_uploads_it_spools() -> None:
    """A Files upload is spooled to /tmp past 1 MiB, and a pod whose emptyDir passes its sizeLimit is
    evicted (every request on it ends): the gateway's /tmp holds several of the largest uploads at once."""
    (gateway,) = [
        d
        for d in _of_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    largest = int(env.get("SWITCHYARD_FILES_MAX_BYTES", GatewaySettings().files_max_bytes))
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert _quantity_bytes(tmp["emptyDir"]["sizeLimit"]) >= 8 * largest


def test_the_gateways_memory_limit_holds_the_bodies_it_takes_in_and_the_requests_in_flight() -> None:
    """An out-of-memory kill ends every request on the replica. Measured (bench/inflight_memory_bench.py,
    docs/performance.md): ~130 MiB idle, up to ~4x SWITCHYARD_MAX_BODY_BYTES_READING at peak while bodies
    are taken in, ~2 MiB per request waiting for its answer. The HPA scales on CPU, which waiting requests
    do not use: the limit holds 150 of them (seven organisations at their default 20 concurrent tasks)."""
    (gateway,) = [
        d
        for d in _of_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    reading = int(env.get("SWITCHYARD_MAX_BODY_BYTES_READING", GatewaySettings().max_body_bytes_reading))
    assert reading > 0, "without it, 30 max-size bodies at once took a replica 713 MiB above idle"
    mib = 1024 * 1024
    needed = 130 * mib + 4 * reading + 150 * 2 * mib
    assert _quantity_bytes(container["resources"]["limits"]["memory"]) >= needed


def test_the_gateway_takes_connections_until_the_service_stops_sending_them() -> None:
    """The gateway is the one service clients connect to, through a Service: SIGTERM closes its listening
    socket at once, while the endpoints take seconds to drop the pod everywhere, so a rolling restart
    refused the connections sent meanwhile. The gateway keeps serving through that, unready: /readyz is
    503 `stopping` from the signal on (test_stopping_readiness), which a preStop sleep would hide (during
    one, the process does not know it is stopping and says 200)."""
    (gateway,) = [
        d
        for d in _of_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert _unready_s(container) >= 5 and _pre_stop_s(container) == 0


def test_gateway_hpa() -> None:
    (hpa,) = _of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "switchyard-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2


def test_provider_keys_are_referenced_by_the_executor_only() -> None:
    secrets = {s["metadata"]["name"]: s for s in _of_kind("Secret")}
    assert set(secrets["switchyard-providers"]["stringData"]) == {
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
    }
    for deployment in _of_kind("Deployment"):
        text = yaml.safe_dump(deployment)
        is_executor = deployment["metadata"]["name"] == "switchyard-executor"
        assert ("switchyard-providers" in text) == is_executor
        assert ("API_KEY" in text) == is_executor
        # the webhook-secret key goes to billing alone
        assert ("switchyard-billing-webhooks" in text) == (
            deployment["metadata"]["name"] == "switchyard-billing"
        )


def test_network_policies_allow_ingress_to_the_gateway_only() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _of_kind("NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and deny["ingress"] == [] and deny["egress"] == []
    for name, spec in policies.items():
        for rule in spec.get("ingress", []):
            sources = rule.get("from")
            if name == "gateway-ingress":
                assert spec["podSelector"] == {
                    "matchLabels": {"app.kubernetes.io/name": "switchyard-gateway"}
                }
                assert [p["port"] for p in rule["ports"]] == [8080]
            else:  # everything else only lets Prometheus scrape /metrics
                assert sources and all(s.get("namespaceSelector") for s in sources), name
                assert [p["port"] for p in rule["ports"]] == [9100], name
    egress_ports = {p["port"] for r in policies["allow-dns-nats-postgres"]["egress"] for p in r["ports"]}
    assert egress_ports == {53, 4222, 5432}


def test_kustomization_lists_every_manifest_but_the_secret_templates() -> None:
    """`kubectl apply -k` on every release must never write a Secret: the templates' empty values
    would replace the real ones created out of band (the database URL, the provider keys, the ledger's
    signing key), and the next pods would start without them."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - BUILD_FILES
    assert listed == on_disk - {SECRET_TEMPLATES}
    for name in listed:
        kinds = {doc["kind"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc}
        assert "Secret" not in kinds, name
    pods = [d["spec"]["template"]["spec"] for d in [*_of_kind("Deployment"), *_of_kind("Job")]]
    referenced = {
        ref["secretKeyRef"]["name"]
        for pod in pods
        for container in pod["containers"]
        for ref in (e.get("valueFrom", {}) for e in container.get("env", []))
        if "secretKeyRef" in ref
    }
    referenced |= {v["secret"]["secretName"] for pod in pods for v in pod.get("volumes", []) if "secret" in v}
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())  # the chart's servers, namespace nats
    referenced |= {
        p["value"]["secret"]["secretName"] for p in values["podTemplate"]["patch"] if "secret" in p["value"]
    }
    templates = {doc["metadata"]["name"] for doc in yaml.safe_load_all((K8S / SECRET_TEMPLATES).read_text())}
    assert referenced == templates
    steps = (ROOT / "docs" / "operations" / "deploy.md").read_text()
    for secret in templates:  # the deploy steps create each one
        assert f"create secret generic {secret} " in steps, secret


def test_nats_chart_values_make_a_three_node_jetstream_cluster() -> None:
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert values["podDisruptionBudget"]["enabled"] is True
    (config,) = _of_kind("ConfigMap")
    assert config["data"]["SWITCHYARD_STREAM_REPLICAS"] == "3"
    assert config["data"]["SWITCHYARD_NATS_URL"].startswith("nats://nats.nats.svc")


def test_every_service_keys_derived_event_ids_with_the_one_secret() -> None:
    """Every Deployment (its replicas and the other services must derive the same ids) takes
    SWITCHYARD_EVENT_ID_SECRET from the secret switchyard-event-ids; the migrate Job (the CLI) does not."""
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    assert {
        f"switchyard-{n}" for n in ("gateway", "classifier", "router", "executor", "billing", "audit")
    } <= set(deployments)
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            ref = env["SWITCHYARD_EVENT_ID_SECRET"]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == ("switchyard-event-ids", "secret"), name
    for job in _of_kind("Job"):
        for container in job["spec"]["template"]["spec"]["containers"]:
            assert "SWITCHYARD_EVENT_ID_SECRET" not in {e["name"] for e in container.get("env", [])}
