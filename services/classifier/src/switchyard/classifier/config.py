"""The classifier's settings (env prefix SWITCHYARD_), loaded in `main()`, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from switchyard.common.config import CommonSettings
from switchyard.common.embedding import model_files

# Tokens the encoder reads per prompt (the head and the tail of longer ones) when `switchyard classifier
# train` builds heads; heads.json records it (`prompt_tokens`) and the service, the outcome recorder and
# `switchyard classifier eval|predict` read prompts at the loaded heads' cap unless told otherwise
# (`SWITCHYARD_CLASSIFIER_MAX_TOKENS`, `--max-tokens`). 48 since heads-4: as accurate as 128 on held-out
# sources, at ~40 % fewer encoder tokens on real prompts (services/classifier/README.md).
# Here, not in `classify`, so that reading the settings does not import the model code.
PROMPT_TOKENS = 48


class ClassifierSettings(CommonSettings):
    models_dir: Path | None = Field(
        default=None, description="root of the built ONNX models; default ~/.cache/switchyard/models"
    )
    classifier_precision: Literal["int8-l5", "int8", "fp32", "int8-fused"] = Field(
        default=model_files.DEFAULT_PRECISION,
        description="encoder file: int8-l5 (the plain graph's first five layers, int8), int8 (all six "
        "layers), int8-fused (ONNX Runtime's fused operators) or fp32; the heads are trained on the "
        "default's embeddings, so another one should get retrained heads",
    )
    classifier_threads: int = Field(default=1, ge=1, le=64, description="ONNX Runtime intra-op threads")
    classifier_max_tokens: int | None = Field(
        default=None,
        ge=8,
        le=512,
        description="tokens of each prompt the encoder reads (head and tail of longer ones); default: the "
        "cap the loaded heads were trained at (heads.json `prompt_tokens`, 48 for the shipped heads); "
        "`switchyard classifier eval --max-tokens N` says what another cap costs in accuracy",
    )
    classifier_max_batch: int = Field(default=32, ge=1, le=256)
    classifier_max_wait_ms: float = Field(
        default=0.0, ge=0, le=50, description="extra wait to fill a batch; 0 batches only what is queued"
    )
    classifier_reuse_size: int = Field(
        default=4096,
        ge=0,
        le=1_000_000,
        description="predictions kept for reuse when a tenant sends the same user turns again (an agent's "
        "tool loop, a retry), least recently used out; 0: classify every task",
    )
    classifier_workers: int = Field(default=64, ge=1, le=1024, description="events handled concurrently")
    classifier_artifact_dir: Path | None = Field(
        default=None, description="trained heads; default: the artifact shipped in the package"
    )
    classifier_follow_promotions: bool = Field(
        default=True,
        description="load the heads `switchyard classifier promote|rollback` put in force, at start and "
        "while running (no restart); off: only classifier_artifact_dir's",
    )
    classifier_promotion_poll_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="the promoted heads' key is also read this often (the watch "
        "may be lost in a reconnect): the longest a promotion can wait",
    )
    classifier_build_models: bool = Field(
        default=True, description="build the ONNX files on start if `switchyard models build` has not"
    )
    classifier_outcome_tenants: list[str] = Field(
        default_factory=list,
        description="tenants whose classified tasks' features (never text) are kept for retraining; "
        '"*" for all; empty: none (the outcome recorder stores nothing)',
    )
    classifier_outcome_retention_days: float = Field(
        default=30.0, gt=0, description="outcome features older than this are deleted"
    )
