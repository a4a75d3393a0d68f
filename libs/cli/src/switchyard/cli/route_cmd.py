"""`switchyard route --dry-run --jsonl FILE`: what the router would decide for each prompt, executing
nothing. Lines {"id", "prompt"} in; lines {"id", "tier", "model", "strategy"} out (stdout)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from switchyard.cli.classifier_cmd import jsonl_path, open_jsonl
from switchyard.common.events import Classification, TaskSubmitted


def classifier_predictor(*, artifact: Path | None, threads: int):  # type: ignore[no-untyped-def]
    """The classifier's offline predictor, behind the router's `Classify` boundary."""
    import time

    from switchyard.classifier.blas import one_blas_thread

    one_blas_thread()

    from switchyard.classifier.classify import Classifier, classification, task_text
    from switchyard.classifier.config import ClassifierSettings

    settings = ClassifierSettings()
    model = Classifier.load(
        models_dir=settings.models_dir,
        artifact_dir=artifact or settings.classifier_artifact_dir,
        threads=threads,
    )

    def classify(tasks: list[TaskSubmitted]) -> list[Classification]:
        started = time.perf_counter()
        predictions = model.predict_many([task_text(t) for t in tasks])
        each_ms = (time.perf_counter() - started) * 1000.0 / max(len(tasks), 1)
        return [
            classification(t, p, model_version=model.model_version, latency_ms=each_ms)
            for t, p in zip(tasks, predictions, strict=True)
        ]

    return classify


def _route(args: argparse.Namespace) -> int:
    if not args.dry_run:
        print(
            "only --dry-run is supported: submit real tasks through the gateway or the bus", file=sys.stderr
        )
        return 2
    from switchyard.classifier.offline import read_jsonl  # the same {"id","prompt"} lines as `predict`
    from switchyard.common.policy import load_policy
    from switchyard.router.dry_run import route_rows

    policy = load_policy(args.policy)
    available = set(args.providers.split(",")) if args.providers else {m.provider for m in policy.models}
    classify = classifier_predictor(artifact=args.artifact, threads=args.threads)
    with open_jsonl(args.jsonl) as source:
        for row in route_rows(
            read_jsonl(source),
            classify=classify,
            policy=policy,
            available=available,
            tenant_id=args.tenant,
            explain=args.explain,
        ):
            sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    route = sub.add_parser("route", help="route prompts without running them (--dry-run)")
    route.add_argument("--dry-run", action="store_true", help="decide only; execute nothing")
    route.add_argument("--jsonl", required=True, type=jsonl_path, help='lines {"id","prompt"}; - for stdin')
    route.add_argument("--policy", type=Path, help="policy YAML; default: SWITCHYARD_POLICY_PATH or bundled")
    route.add_argument("--providers", help="comma-separated providers to assume available; default: all")
    route.add_argument("--tenant", default="dry-run", help="tenant id (for per-tenant overrides)")
    route.add_argument("--explain", action="store_true", help="add candidates, cost and reasons")
    route.add_argument("--artifact", type=Path, help="classifier artifact folder")
    route.add_argument("--threads", type=int, default=1)
    route.set_defaults(func=_route)
