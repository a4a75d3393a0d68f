"""`switchyard classifier promote|rollback|heads`: the heads every classifier replica uses, without a restart.

`promote` puts an artifact folder's heads in force on the bus (checked first, as a replica checks them),
`rollback` puts back the heads before the live ones, `heads` shows what is in force and what each running
replica classifies with (promotion.py, follower.py in the classifier).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.js import JetStreamContext

from switchyard.cli.bus import on_bus
from switchyard.common.errors import ConfigurationError

if TYPE_CHECKING:
    from switchyard.classifier.promotion import Files, Promoted


def publish(new: Files, *, baseline: Files | None, note: str, nats_url: str | None) -> Promoted:
    """Puts `new` in force on the bus; `baseline`: the heads the replicas run, kept to roll back to when
    nothing was promoted before."""
    from switchyard.classifier import promotion
    from switchyard.classifier.config import ClassifierSettings

    replicas = ClassifierSettings().stream_replicas
    return on_bus(
        nats_url, lambda js: promotion.promote(js, new, baseline=baseline, note=note, replicas=replicas)
    )


def baseline_of(folder: Path | None) -> Files | None:
    """The heads the replicas were started with (the configured artifact, else the shipped one), to roll
    the first promotion back to; None, said on stderr, when they do not load."""
    from switchyard.classifier import artifact, promotion

    try:
        return promotion.read_folder(folder)
    except artifact.ArtifactError as exc:
        print(f"(no heads to roll back to: {exc.message})", file=sys.stderr)
        return None


def describe(promoted: Promoted) -> str:
    back = promoted.before[0].version if promoted.before else "nothing (no heads before these)"
    return f"{promoted.version} in force ({promoted.action}, {promoted.at.isoformat()}); rollback -> {back}"


def _promote(args: argparse.Namespace) -> int:
    from switchyard.classifier import artifact, promotion
    from switchyard.classifier.config import ClassifierSettings

    settings = ClassifierSettings()
    try:
        new = promotion.read_folder(args.artifact)
    except artifact.ArtifactError as exc:
        print(f"promote: {exc.message}", file=sys.stderr)
        return 2
    try:
        promoted = publish(
            new,
            baseline=baseline_of(settings.classifier_artifact_dir),
            note=args.note or f"promoted {args.artifact}",
            nats_url=args.nats_url,
        )
    except ConfigurationError as exc:  # JetStream has no room for the object store
        print(f"promote: {exc.message}", file=sys.stderr)
        return 2
    print(f"promoted: {describe(promoted)}")
    return _wait(args, promoted)


def _rollback(args: argparse.Namespace) -> int:
    from switchyard.classifier import promotion

    try:
        promoted = on_bus(args.nats_url, promotion.rollback)
    except promotion.NothingToRollBack as exc:
        print(f"rollback: {exc.message}", file=sys.stderr)
        return 2
    print(f"rolled back: {describe(promoted)}")
    return _wait(args, promoted)


def _wait(args: argparse.Namespace, promoted: Promoted) -> int:
    """With --wait S: until every replica reporting classifies with `promoted` (exit 1 after S seconds,
    naming the replicas that do not)."""
    if not args.wait:
        return 0
    from switchyard.classifier import promotion

    started = time.monotonic()
    while True:
        replicas = on_bus(args.nats_url, promotion.replica_reports)
        behind = [r for r in replicas if r.weights_sha256 != promoted.weights_sha256]
        if replicas and not behind:
            print(
                f"{len(replicas)} replica(s) on {promoted.version} after {time.monotonic() - started:.2f} s"
            )
            return 0
        if time.monotonic() - started > args.wait:
            for r in behind:
                print(
                    f"{r.instance}: still {r.model_version}"
                    + (f" (refused {r.refused})" if r.refused else "")
                )
            if not replicas:
                print("no classifier replica reports its heads")
            return 1
        time.sleep(0.1)


def _heads(args: argparse.Namespace) -> int:
    from switchyard.classifier import promotion

    async def work(js: JetStreamContext) -> dict[str, Any]:
        promoted, revision = await promotion.live(js)
        replicas = await promotion.replica_reports(js)
        return {
            "live": promoted.model_dump(mode="json") if promoted else None,
            "revision": revision,
            "replicas": [r.model_dump(mode="json", exclude={"pointer"}) for r in replicas],
        }

    found = on_bus(args.nats_url, work)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    live = found["live"]
    if live is None:
        print("no heads promoted: every replica classifies with the artifact it was started with")
    else:
        print(f"in force: {live['version']} ({live['action']} at {live['at']}, revision {found['revision']})")
        print("before it: " + (", ".join(b["version"] for b in live["before"]) or "nothing"))
    for r in found["replicas"]:
        refused = f"  refused {r['refused']}" if r["refused"] else ""
        print(f"  {r['instance']}: {r['model_version']} since {r['since']}{refused}")
    return 0


def register(cls_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def bus(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--nats-url", help="default: SWITCHYARD_NATS_URL, else `switchyard up`'s (nats://127.0.0.1:4222)"
        )

    def wait(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="S",
            help="then wait up to S seconds for every running replica to classify with them (exit 1 if not)",
        )

    pm = cls_sub.add_parser(
        "promote", help="put an artifact's heads in force on every running classifier replica (no restart)"
    )
    pm.add_argument(
        "--artifact", type=Path, required=True, help="the artifact folder (heads.json, heads.npz)"
    )
    pm.add_argument("--note", help="why (kept in the pointer)")
    bus(pm)
    wait(pm)
    pm.set_defaults(func=_promote)

    rb = cls_sub.add_parser("rollback", help="put the heads before the live ones back in force (no restart)")
    bus(rb)
    wait(rb)
    rb.set_defaults(func=_rollback)

    hd = cls_sub.add_parser("heads", help="the heads in force and what each running replica classifies with")
    hd.add_argument("--json", action="store_true")
    bus(hd)
    hd.set_defaults(func=_heads)
