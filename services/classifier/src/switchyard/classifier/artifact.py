"""The heads artifact: `heads.npz` (weights) and `heads.json` (version, labels, metrics, data hash).

`heads.json` records the sha256 of `heads.npz`; loading checks it, the label map and every shape, and
refuses (ArtifactError, with the path and what is wrong) rather than classify with a damaged model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.classifier import features
from switchyard.classifier.heads import LEGACY_PROMPT_TOKENS, Heads, Mlp, ScriptHead
from switchyard.common.errors import ConfigurationError
from switchyard.common.events.tasks import TASK_TYPES

WEIGHTS = "heads.npz"
MANIFEST = "heads.json"


class ArtifactError(ConfigurationError):
    code = "classifier_artifact_invalid"


class IncompatibleHeads(ArtifactError):
    """Whole heads that the running classifier cannot use (another encoder, another input size)."""

    code = "classifier_heads_incompatible"


class OtherScripts(BaseModel):
    """heads.ScriptHead's scalars (its arrays are in the npz under `other.`)."""

    model_config = ConfigDict(extra="allow")

    temperature: float = Field(gt=0)
    min_non_ascii: float = Field(ge=0, lt=1)
    other_languages: bool = False  # heads-8 on: also prompts in another Latin-script language


class ArtifactManifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str = Field(min_length=1)
    labels: list[str]
    lexical_features: str
    embedding_dim: int
    embedding_model_sha256: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    training_data_sha256: str
    temperature: float = 1.0
    prompt_tokens: int = Field(default=LEGACY_PROMPT_TOKENS, ge=8, le=512)
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    other_scripts: OtherScripts | None = None


def default_dir() -> Path:
    return Path(str(files("switchyard.classifier") / "artifacts"))


def save(folder: Path, heads: Heads, manifest: dict[str, Any]) -> Path:
    """Writes both files deterministically (fixed array order, no timestamps in the npz). Both are staged
    beside their final names first and then put in place back to back (`os.replace`), so a write that
    fails or is interrupted leaves the artifact already there (often the live one, for a retrain) whole:
    never a truncated file, and a mismatched pair only if the process dies between the two renames."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"norm.mean": heads.mean, "norm.std": heads.std}
    arrays.update(heads.type_head.arrays("type"))
    arrays.update(heads.complexity_head.arrays("complexity"))
    other = heads.other_scripts
    if other is not None:
        arrays.update({"other.norm.mean": other.mean, "other.norm.std": other.std})
        arrays.update(other.type_head.arrays("other.type"))
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, dtype=np.float32) for k, v in sorted(arrays.items())})  # type: ignore[arg-type]
    data = buf.getvalue()
    doc = {
        **manifest,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "version": heads.version,
        "labels": list(heads.labels),
        "temperature": heads.temperature,
    }
    fit = doc.pop("other_scripts", None) or {}
    if other is not None:
        doc["other_scripts"] = {**fit, "temperature": other.temperature, "min_non_ascii": other.min_non_ascii}
        if other.other_languages:  # absent before heads-8, so older artifacts keep their bytes
            doc["other_scripts"]["other_languages"] = True
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    staged = [
        (folder / f".{WEIGHTS}.tmp", folder / WEIGHTS),
        (folder / f".{MANIFEST}.tmp", folder / MANIFEST),
    ]
    try:
        staged[0][0].write_bytes(data)
        staged[1][0].write_text(text, encoding="utf-8")
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return folder


def load(folder: Path | None = None) -> Heads:
    folder = folder or default_dir()
    manifest_path, weights_path = folder / MANIFEST, folder / WEIGHTS
    for path in (manifest_path, weights_path):
        if not path.is_file():
            raise ArtifactError(
                f"classifier artifact missing: {path} not found "
                "(train one with `switchyard classifier train`)"
            )
    return from_bytes(
        manifest_path.read_bytes(),
        weights_path.read_bytes(),
        manifest_at=manifest_path,
        weights_at=weights_path,
    )


def from_bytes(
    manifest_bytes: bytes,
    data: bytes,
    *,
    manifest_at: Path | str = MANIFEST,
    weights_at: Path | str = WEIGHTS,
) -> Heads:
    """The heads from the two files' bytes (a folder's, or a promoted artifact's from the bus), with every
    check `load` makes: the weights' sha256, the label map, the features version, every shape.
    `manifest_at` / `weights_at` name where the bytes came from in the errors."""
    manifest_path, weights_path = manifest_at, weights_at
    try:
        manifest = ArtifactManifest.model_validate_json(manifest_bytes)
    except ValidationError as exc:
        raise ArtifactError(f"classifier artifact {manifest_path} is corrupt: {exc.errors()[:3]}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.weights_sha256:
        raise ArtifactError(
            f"classifier artifact {weights_path} is corrupt: sha256 {digest[:16]}... does not match "
            f"{manifest.weights_sha256[:16]}... recorded in {MANIFEST}"
        )
    if tuple(manifest.labels) != TASK_TYPES:
        raise ArtifactError(
            f"classifier artifact {manifest_path}: label map {manifest.labels} != {TASK_TYPES}"
        )
    if manifest.lexical_features != features.FEATURES_VERSION:
        raise ArtifactError(
            f"classifier artifact {manifest_path} was trained with features {manifest.lexical_features!r}, "
            f"this code computes {features.FEATURES_VERSION!r}: retrain it"
        )
    try:
        with np.load(io.BytesIO(data)) as npz:
            arrays = {k: npz[k] for k in npz.files}
        heads = Heads(
            version=manifest.version,
            labels=tuple(manifest.labels),
            mean=arrays["norm.mean"],
            std=arrays["norm.std"],
            type_head=Mlp.from_arrays(arrays, "type"),
            complexity_head=Mlp.from_arrays(arrays, "complexity"),
            temperature=manifest.temperature,
            manifest=manifest.model_dump(),
            other_scripts=_other_scripts(arrays, manifest.other_scripts),
        )
    except (KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"classifier artifact {weights_path} is unusable: {exc}") from exc
    dim = manifest.embedding_dim + features.DIM
    shapes_ok = (
        heads.mean.shape == (dim,)
        and heads.std.shape == (dim,)
        and heads.type_head.input_dim == dim
        and heads.type_head.output_dim == len(TASK_TYPES)
        and heads.complexity_head.input_dim == dim
        and heads.complexity_head.output_dim == 1
    )
    other = heads.other_scripts
    if other is not None:
        shapes_ok = shapes_ok and (
            other.mean.shape == (dim,)
            and other.std.shape == (dim,)
            and other.type_head.input_dim == dim
            and other.type_head.output_dim == len(TASK_TYPES)
        )
    if not shapes_ok:
        raise ArtifactError(
            f"classifier artifact {weights_path}: weight shapes do not match {dim} input features"
        )
    return heads


def _other_scripts(arrays: dict[str, np.ndarray], scalars: OtherScripts | None) -> ScriptHead | None:
    if scalars is None:
        if any(k.startswith("other.") for k in arrays):
            raise ValueError("weights for an other-scripts head that heads.json does not describe")
        return None
    return ScriptHead(
        mean=arrays["other.norm.mean"],
        std=arrays["other.norm.std"],
        type_head=Mlp.from_arrays(arrays, "other.type"),
        temperature=scalars.temperature,
        min_non_ascii=scalars.min_non_ascii,
        other_languages=scalars.other_languages,
    )
