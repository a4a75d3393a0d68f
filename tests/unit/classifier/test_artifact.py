"""The heads artifact: the shipped one loads; missing, corrupt or mismatched ones are refused clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.classifier import artifact
from switchyard.classifier.config import PROMPT_TOKENS

pytestmark = pytest.mark.unit


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    folder = tmp_path / "artifact"
    shutil.copytree(artifact.default_dir(), folder)
    return folder


def test_the_shipped_artifact_loads_with_its_metadata() -> None:
    heads = artifact.load()
    assert heads.version and len(heads.labels) == 9
    m = heads.manifest
    assert len(m["training_data_sha256"]) == 64 and "type_heldout" in m["metrics"]
    # trained at the cap `switchyard classifier train` uses, which the service reads prompts at
    assert heads.prompt_tokens == PROMPT_TOKENS == m["prompt_tokens"]
    assert heads.input_version == f"{m['lexical_features']}+t{PROMPT_TOKENS}"


def test_an_artifact_from_before_the_cap_was_recorded_reads_at_128(copy: Path) -> None:
    """heads.json without `prompt_tokens` (heads-1..3): trained at 128, and outcome vectors stored for them
    (features version without a cap) still match."""
    doc = json.loads((copy / artifact.MANIFEST).read_text())
    del doc["prompt_tokens"]
    (copy / artifact.MANIFEST).write_text(json.dumps(doc))
    heads = artifact.load(copy)
    assert heads.prompt_tokens == 128 and heads.input_version == doc["lexical_features"]


def test_flipped_weight_bytes_are_refused(copy: Path) -> None:
    data = bytearray((copy / artifact.WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / artifact.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(artifact.ArtifactError, match="corrupt: sha256"):
        artifact.load(copy)


def test_missing_files_are_refused(copy: Path) -> None:
    (copy / artifact.WEIGHTS).unlink()
    with pytest.raises(artifact.ArtifactError, match="missing"):
        artifact.load(copy)


def test_a_broken_manifest_is_refused(copy: Path) -> None:
    (copy / artifact.MANIFEST).write_text("{not json")
    with pytest.raises(artifact.ArtifactError, match="corrupt"):
        artifact.load(copy)


def test_a_different_label_map_is_refused(copy: Path) -> None:
    doc = json.loads((copy / artifact.MANIFEST).read_text())
    doc["labels"] = list(reversed(doc["labels"]))
    (copy / artifact.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(artifact.ArtifactError, match="label map"):
        artifact.load(copy)


def test_the_service_refuses_to_start_on_a_corrupt_artifact(copy: Path) -> None:
    (copy / artifact.WEIGHTS).write_bytes(b"garbage")
    env = {
        **os.environ,
        "SWITCHYARD_CLASSIFIER_ARTIFACT_DIR": str(copy),
        "SWITCHYARD_NATS_URL": "nats://127.0.0.1:1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "switchyard.classifier"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "cannot start" in proc.stderr and "corrupt" in proc.stderr and "Traceback" not in proc.stderr
