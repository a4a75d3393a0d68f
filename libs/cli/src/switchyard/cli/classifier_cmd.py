"""`switchyard classifier train|eval|predict`: the task classifier's heads, offline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchyard.classifier.config import ClassifierSettings

DEFAULT_DATA = Path("/work/shared/data/classifier/train_pool.jsonl")


def _settings() -> ClassifierSettings:
    from switchyard.classifier.config import ClassifierSettings

    return ClassifierSettings()


def _train(args: argparse.Namespace) -> int:
    from switchyard.classifier import artifact, offline
    from switchyard.classifier.config import PROMPT_TOKENS
    from switchyard.classifier.evaluation import format_report
    from switchyard.classifier.training import OTHER_SCRIPTS_OVER, TrainingRun

    settings = _settings()
    version = args.version or TrainingRun().version
    out = args.out or settings.classifier_artifact_dir or artifact.default_dir()
    manifest = offline.train(
        data=args.data,
        out=out,
        models_dir=settings.models_dir,
        threads=args.threads,
        seed=args.seed,
        per_source=args.per_source,
        version=version,
        prompt_tokens=args.max_tokens or PROMPT_TOKENS,
        multilingual=args.multilingual,
        natural=args.natural,
        other_scripts=None
        if args.no_other_scripts
        else (OTHER_SCRIPTS_OVER if args.other_scripts_over is None else args.other_scripts_over),
        other_languages=not args.no_other_languages,
    )
    metrics = manifest["metrics"]
    print(f"wrote {out} ({version})")
    print(format_report(metrics["type_heldout"]))
    _print_confidence(metrics)
    c = metrics["complexity_heldout_mmlu_subjects"]
    print(
        f"\ncomplexity on held-out MMLU subjects: ECE {c['ece']}, Brier {c['brier']} "
        f"(base rate {c['brier_of_base_rate']}), AUC {c['auc']}, n={c['n']}"
    )
    return 0


def _folds(args: argparse.Namespace) -> int:
    from switchyard.classifier import offline, training
    from switchyard.classifier.config import PROMPT_TOKENS

    run = training.TrainingRun(
        prompt_tokens=args.max_tokens or PROMPT_TOKENS,
        multilingual=args.multilingual,
        multilingual_weight=args.multilingual_weight,
        natural=args.natural,
        open_questions=args.open_questions,
        coding_requests=args.coding_requests,
    )
    result = offline.validate(
        data=args.data,
        models_dir=_settings().models_dir,
        threads=args.threads,
        run=run,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        heldout=args.heldout,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    for name, fold in result["folds"].items():
        print(f"fold {name:<3} n={fold['n']:<5} macro-F1 {fold['mean']:.4f}  per seed {fold['f1']}")
    print(f"validation (A, B) {result['validation']}  multilingual (M1, M2) {result['multilingual']}")
    if "heldout" in result:
        print(f"held-out (a guard, not a criterion) {result['heldout']}")
    return 0


def _print_confidence(metrics: dict[str, Any]) -> None:
    conf = metrics.get("type_confidence_heldout")
    if conf:
        print(
            f"\ntype confidence on held-out sources: ECE {conf['ece']} at temperature "
            f"{conf['temperature']} (ECE {conf['ece_at_temperature_1']} at 1.0), Brier {conf['brier']}"
        )


def _eval(args: argparse.Namespace) -> int:
    from switchyard.classifier.blas import one_blas_thread

    one_blas_thread()
    from switchyard.classifier import offline
    from switchyard.classifier.evaluation import format_report

    settings = _settings()
    metrics = offline.evaluate(
        data=args.data,
        artifact_dir=args.artifact or settings.classifier_artifact_dir,
        models_dir=settings.models_dir,
        threads=args.threads,
        max_tokens=args.max_tokens,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(format_report(metrics["type_heldout"]))
    print("\naccuracy by held-out source:", json.dumps(metrics["type_heldout"]["accuracy_by_source"]))
    _print_confidence(metrics)
    c = metrics["complexity_heldout_mmlu_subjects"]
    print(
        f"\ncomplexity calibration (P(cheap model fails), held-out MMLU subjects, n={c['n']}): "
        f"ECE {c['ece']}, Brier {c['brier']} (base rate {c['brier_of_base_rate']}), AUC {c['auc']}"
    )
    print("| bin | n | predicted | observed |\n|---|---|---|---|")
    for row in c["reliability"]:
        print(f"| {row['bin']} | {row['n']} | {row['predicted']:.3f} | {row['observed']:.3f} |")
    return 0


def jsonl_path(text: str) -> str:
    """`--jsonl`: `-` (stdin) or a file that can be read; else argparse's one-line error (exit 2)."""
    if text != "-":
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(
                f"{text}: no such file" if not path.exists() else f"{text}: not a file"
            )
        if not os.access(path, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
    return text


def open_jsonl(path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    """The lines to read as bytes (`offline.read_jsonl` decodes each on its own): stdin for `-`."""
    if path == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    return open(path, "rb")


def _predict(args: argparse.Namespace) -> int:
    from switchyard.classifier.blas import one_blas_thread

    one_blas_thread()
    from switchyard.classifier import offline

    settings = _settings()
    with open_jsonl(args.jsonl) as source:
        offline.predict(
            source=source,
            sink=sys.stdout,
            artifact_dir=args.artifact or settings.classifier_artifact_dir,
            models_dir=settings.models_dir,
            threads=args.threads,
            max_tokens=args.max_tokens or settings.classifier_max_tokens,
        )
    return 0


async def _ledger_records(url: str) -> list[Any]:
    """The ledger entries retraining reads (classifications, feedback, results), from the audit database."""
    import orjson
    from sqlalchemy import select

    from switchyard.audit.models import LedgerEntry
    from switchyard.classifier.outcomes.ledger import ACTIONS, LedgerRecord
    from switchyard.cli import database

    engine = database.engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(LedgerEntry).where(LedgerEntry.action.in_(ACTIONS)))
            return [
                LedgerRecord(r.seq, r.occurred_at, r.tenant_id, r.action, orjson.loads(r.details))
                for r in rows
            ]
    finally:
        await engine.dispose()


def _fraction(text: str) -> float:
    """A holdout share: a fraction strictly between 0 and 1 (0 or 1 leaves nothing to train or judge on)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a fraction between 0 and 1 (exclusive), not {text!r}")
    return value


def _retrain(args: argparse.Namespace) -> int:
    if not args.from_ledger:
        print("retrain: only --from-ledger is supported", file=sys.stderr)
        return 2
    settings = _settings()
    out = args.out or settings.classifier_artifact_dir
    if out is None and not args.dry_run:
        print("retrain: give --out or set SWITCHYARD_CLASSIFIER_ARTIFACT_DIR", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="switchyard-heads-") as scratch:
        return _retrain_in(args, settings, out, Path(scratch))


def _retrain_in(
    args: argparse.Namespace, settings: ClassifierSettings, out: Path | None, scratch: Path
) -> int:
    from switchyard.audit.config import AuditSettings
    from switchyard.classifier import artifact, promotion
    from switchyard.classifier.outcomes import guard
    from switchyard.classifier.outcomes.offline import retrain_from_ledger

    current_dir = args.artifact or settings.classifier_artifact_dir
    try:  # the current heads first: a missing or corrupt artifact is said before the ledger is read
        if args.publish and args.artifact is None and (live := _live_heads(args.nats_url)) is not None:
            # the heads in force on the bus (a promotion, a rollback) are what the candidates must beat
            current_dir = promotion.write_folder(live, scratch)
        current = promotion.read_folder(current_dir)
    except artifact.ArtifactError as e:
        print(f"retrain: {e}", file=sys.stderr)
        return 2
    public = None
    if args.public_guard:
        if not args.public_data.is_file():
            print(
                f"retrain: the public held-out split {args.public_data} is not there: give --public-data, "
                "or --no-public-guard to promote on the ledger's holdout alone",
                file=sys.stderr,
            )
            return 2

        def public() -> guard.HeldOut:
            return guard.held_out(
                args.public_data,
                models_dir=settings.models_dir,
                threads=1,
                max_tokens=artifact.load(current_dir).prompt_tokens,
            )

    records = asyncio.run(_ledger_records(args.ledger_db or AuditSettings().db_url()))
    decision = asyncio.run(
        retrain_from_ledger(
            records,
            database_url=settings.db_url(),
            artifact_dir=current_dir,
            out=out or Path("."),
            holdout=args.holdout,
            min_rows=args.min_rows,
            dry_run=args.dry_run,
            public=public,
            max_public_drop=args.max_public_drop,
        )
    )
    if args.json:
        print(json.dumps({"promoted": decision.promoted, "reasons": decision.reasons, **decision.report}))
    else:
        for reason in decision.reasons:
            print(reason)
        if not decision.promoted:
            print("kept the current heads")
        elif args.dry_run:
            print(f"dry run: would have promoted {decision.heads.version}" + (f" -> {out}" if out else ""))
        else:
            print(f"promoted {decision.heads.version} -> {out}")
    if decision.promoted and not args.dry_run and args.publish:
        return _publish_promoted(out or Path("."), current, args)
    return 0


def _live_heads(nats_url: str | None) -> Any:
    """The heads in force on the bus, or None when nothing was promoted."""
    from switchyard.classifier import promotion
    from switchyard.cli.bus import on_bus

    return on_bus(nats_url, promotion.live_files)


def _publish_promoted(out: Path, current: Any, args: argparse.Namespace) -> int:
    """Puts the heads retraining promoted in force on every running replica (`current`, the heads they
    were trained from, is kept to roll back to if nothing was promoted before)."""
    from switchyard.classifier import promotion
    from switchyard.cli.classifier_heads_cmd import describe, publish
    from switchyard.common.errors import ConfigurationError

    try:
        promoted = publish(
            promotion.read_folder(out),
            baseline=current,
            note="retrain --from-ledger",
            nats_url=args.nats_url,
        )
    except (SystemExit, ConfigurationError) as exc:  # no bus, no room on it: the artifact is written
        why = exc.message if isinstance(exc, ConfigurationError) else exc.code
        print(
            f"retrain: {why}; {out} is written but not in force: "
            f"`switchyard classifier promote --artifact {out}` puts it in force",
            file=sys.stderr,
        )
        return 1
    print(f"published: {describe(promoted)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _switch(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """`--flag` / `--no-flag`, off by default."""
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=False, help=help_text)


NATURAL_HELP = "mix in the natural English requests (data/natural_requests.jsonl), a source of their own"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cls = sub.add_parser("classifier", help="train, evaluate and run the task classifier")
    cls_sub = cls.add_subparsers(dest="classifier_command", required=True)

    train = cls_sub.add_parser("train", help="train the heads reproducibly and write the artifact")
    train.add_argument("--data", type=Path, default=DEFAULT_DATA)
    train.add_argument("--out", type=Path, help="artifact folder; default: the one shipped in the package")
    train.add_argument("--seed", type=int, default=20240601)
    train.add_argument("--version", help="the heads' version (default: training.TrainingRun's, heads-8)")
    train.add_argument("--per-source", type=int, help="cap rows per source (quick runs)")
    train.add_argument("--threads", type=int, default=1)
    train.add_argument(
        "--max-tokens",
        type=int,
        help="tokens per prompt to train at, recorded in heads.json (default: classifier's PROMPT_TOKENS)",
    )
    _switch(
        train, "--multilingual", "mix the multilingual requests into the main head (tried, not the recipe)"
    )
    _switch(train, "--natural", NATURAL_HELP)
    train.add_argument(
        "--other-scripts-over",
        type=float,
        default=None,
        help="prompts whose share of non-ASCII characters is above this get the other-scripts head "
        "(default: training.OTHER_SCRIPTS_OVER, 0.3)",
    )
    train.add_argument(
        "--no-other-scripts", action="store_true", help="no other-scripts head (heads-5's recipe)"
    )
    train.add_argument(
        "--no-other-languages",
        action="store_true",
        help="the other-scripts head reads other scripts only, not other Latin-script languages (heads-7)",
    )
    train.set_defaults(func=_train)

    ev = cls_sub.add_parser("eval", help="macro-F1, per-class P/R/F1, confusion, complexity calibration")
    ev.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ev.add_argument("--artifact", type=Path)
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument(
        "--max-tokens", type=int, help="read prompts at this cap (default: the heads' training cap)"
    )
    ev.set_defaults(func=_eval)

    fo = cls_sub.add_parser(
        "folds", help="score a training recipe on validation folds of training data (how choices are made)"
    )
    fo.add_argument("--data", type=Path, default=DEFAULT_DATA)
    fo.add_argument("--seeds", default="1,11,2,3,5,7", help="one MLP per fold and seed")
    fo.add_argument("--max-tokens", type=int, help="tokens per prompt (default: classifier's PROMPT_TOKENS)")
    _switch(fo, "--multilingual", "train on the multilingual requests (folds M1 / M2 score them either way)")
    _switch(fo, "--natural", NATURAL_HELP)
    fo.add_argument(
        "--multilingual-weight",
        choices=("seed", "source"),
        default="seed",
        help="the multilingual rows share the seed prompts' weight, or weigh as a source of their own",
    )
    fo.add_argument("--open-questions", type=int, default=0, help="per label (mixing.open_questions)")
    fo.add_argument("--coding-requests", type=int, default=0, help="mixing.coding_requests")
    fo.add_argument("--heldout", action="store_true", help="also score the held-out split (a guard)")
    fo.add_argument("--threads", type=int, default=1)
    fo.add_argument("--json", action="store_true")
    fo.set_defaults(func=_folds)

    pr = cls_sub.add_parser(
        "predict", help='lines {"id","prompt"} in, {"id","type","confidence","complexity"} out'
    )
    pr.add_argument("--jsonl", required=True, type=jsonl_path, help="input file, or - for stdin")
    pr.add_argument("--artifact", type=Path)
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument(
        "--max-tokens",
        type=int,
        help="read prompts at this cap (default: SWITCHYARD_CLASSIFIER_MAX_TOKENS, else the heads' cap)",
    )
    pr.set_defaults(func=_predict)

    rt = cls_sub.add_parser(
        "retrain",
        help="fine-tune the heads on the platform's outcomes; promote only if they beat the current",
    )
    rt.add_argument("--from-ledger", action="store_true", required=True, help="labels from the audit ledger")
    rt.add_argument("--ledger-db", help="the audit database URL; default: the audit service's settings")
    rt.add_argument("--artifact", type=Path, help="the current heads; default: the configured artifact")
    rt.add_argument("--out", type=Path, help="where a promoted artifact is written")
    rt.add_argument("--holdout", type=_fraction, default=0.2, help="newest fraction held out (time split)")
    rt.add_argument("--min-rows", type=int, default=20)
    rt.add_argument("--dry-run", action="store_true", help="decide, write nothing")
    rt.add_argument("--json", action="store_true")
    rt.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="put promoted heads in force on every running classifier replica (default); "
        "--no-publish only writes --out",
    )
    rt.add_argument("--nats-url", help="default: SWITCHYARD_NATS_URL, else `switchyard up`'s")
    rt.add_argument(
        "--public-guard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="promoted heads must also keep their macro-F1 on the public held-out split (default)",
    )
    rt.add_argument("--public-data", type=Path, default=DEFAULT_DATA, help="the pool holding that split")
    rt.add_argument(
        "--max-public-drop",
        type=float,
        default=0.01,
        help="public held-out macro-F1 promoted heads may lose (default 0.01: retraining's own spread)",
    )
    rt.set_defaults(func=_retrain)

    from switchyard.cli import classifier_heads_cmd

    classifier_heads_cmd.register(cls_sub)
