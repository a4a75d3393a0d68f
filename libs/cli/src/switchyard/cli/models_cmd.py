"""`switchyard models build`: the ONNX embedding model files, built from the registry package's weights."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from switchyard.classifier.config import ClassifierSettings
    from switchyard.common.embedding.model_files import default_models_root, ensure_built

    settings = ClassifierSettings()
    root = args.models_dir or settings.models_dir or default_models_root()
    started = time.perf_counter()
    files, built = ensure_built(Path(root), threads=args.threads)
    took = time.perf_counter() - started
    verb = "built" if built else "up to date"
    m = files.manifest
    print(
        f"models {verb}: {files.folder} (int8 cosine to fp32: min {m['int8_cosine_min']:.4f}, "
        f"mean {m['int8_cosine_mean']:.4f}; {took:.1f} s)"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = sub.add_parser("models", help="model files")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    build = models_sub.add_parser("build", help="build the ONNX embedding model (fp32 and int8); idempotent")
    build.add_argument(
        "--models-dir", type=Path, help="default: SWITCHYARD_MODELS_DIR or ~/.cache/switchyard/models"
    )
    build.add_argument("--threads", type=int, default=1, help="threads for the int8 check")
    build.set_defaults(func=_build)
