"""The heads artifact: the shipped one loads; missing, corrupt or mismatched ones are refused clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from switchyard.classifier import artifact, features, languages
from switchyard.classifier.config import PROMPT_TOKENS
from switchyard.classifier.heads import Mlp, ScriptHead
from switchyard.common.events.tasks import TASK_TYPES

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


def _constant_head(dim: int, label: int) -> Mlp:
    """A one-layer head whose logits always favour `label`."""
    bias = np.zeros(len(TASK_TYPES), np.float32)
    bias[label] = 5.0
    return Mlp((np.zeros((dim, len(TASK_TYPES)), np.float32),), (bias,))


def test_prompts_in_other_scripts_are_read_by_their_own_head_and_the_artifact_keeps_it(
    tmp_path: Path,
) -> None:
    shipped = artifact.load()
    dim = shipped.mean.shape[0]
    other = ScriptHead(np.zeros(dim, np.float32), np.ones(dim, np.float32), _constant_head(dim, 1), 1.5, 0.3)
    heads = replace(shipped, type_head=_constant_head(dim, 0), other_scripts=other)
    texts = ["What is the derivative of x^3?", "求函数 f(x)=x³ 的导数。", "¿Cuál es la derivada de x³?"]
    vectors = np.zeros((3, dim - features.DIM), np.float32)
    probs, complexity = heads.predict(vectors, features.lexical_matrix(texts))
    # Chinese is mostly outside ASCII; Spanish is not, and stays with the main head
    assert probs.argmax(axis=1).tolist() == [0, 1, 0] and complexity.shape == (3,)
    assert probs[1, 1] == pytest.approx(float(np.exp(5 / 1.5) / (np.exp(5 / 1.5) + 8)), rel=1e-5)

    folder = artifact.save(tmp_path / "a", heads, dict(heads.manifest))
    loaded = artifact.load(folder)
    assert loaded.other_scripts is not None and loaded.other_scripts.min_non_ascii == 0.3
    assert loaded.other_scripts.temperature == 1.5
    again, _ = loaded.predict(vectors, features.lexical_matrix(texts))
    assert np.allclose(again, probs)

    # weights of such a head that heads.json does not describe: refused, not silently ignored
    doc = json.loads((folder / artifact.MANIFEST).read_text())
    del doc["other_scripts"]
    (folder / artifact.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(artifact.ArtifactError, match="other-scripts"):
        artifact.load(folder)


def test_heads_8_send_other_latin_script_languages_to_the_other_head_and_the_artifact_keeps_it(
    tmp_path: Path,
) -> None:
    shipped = artifact.load()
    dim = shipped.mean.shape[0]
    other = ScriptHead(
        np.zeros(dim, np.float32), np.ones(dim, np.float32), _constant_head(dim, 1), 1.5, 0.3, True
    )
    heads = replace(shipped, type_head=_constant_head(dim, 0), other_scripts=other)
    texts = [
        "What is the derivative of x^3 with respect to x?",
        "求函数 f(x)=x³ 的导数。",
        "¿Cuál es la derivada de x³ con respecto a x?",
        "def f(x):\n    return x ** 3  # la derivada",
    ]
    vectors = np.zeros((len(texts), dim - features.DIM), np.float32)
    langs = languages.flags(texts)
    assert langs.tolist() == [False, False, True, False]
    probs, _ = heads.predict(vectors, features.lexical_matrix(texts), langs)
    assert probs.argmax(axis=1).tolist() == [0, 1, 1, 0]
    # without the language flags (or with a heads-7 head) Spanish stays with the main head
    assert heads.predict(vectors, features.lexical_matrix(texts))[0].argmax(axis=1).tolist() == [0, 1, 0, 0]

    folder = artifact.save(tmp_path / "a", heads, dict(heads.manifest))
    loaded = artifact.load(folder)
    assert loaded.reads_languages and loaded.other_scripts is not None
    assert np.allclose(loaded.predict(vectors, features.lexical_matrix(texts), langs)[0], probs)
    doc = json.loads((folder / artifact.MANIFEST).read_text())
    assert doc["other_scripts"]["other_languages"] is True
    del doc["other_scripts"]["other_languages"]  # as heads-6 and heads-7 wrote it
    (folder / artifact.MANIFEST).write_text(json.dumps(doc))
    assert not artifact.load(folder).reads_languages


def test_a_save_that_fails_leaves_the_artifact_there_whole(
    copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retrain writes into the live folder: a failure while writing must not leave a damaged pair."""
    before = artifact.load(copy)
    weights = (copy / artifact.WEIGHTS).read_bytes()
    heads = replace(before, version="heads-99", temperature=before.temperature + 1.0)

    def full_disk(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)  # the manifest, written after the weights
    with pytest.raises(OSError, match="No space left"):
        artifact.save(copy, heads, dict(before.manifest))
    monkeypatch.undo()
    assert (copy / artifact.WEIGHTS).read_bytes() == weights
    assert artifact.load(copy).version == before.version
    assert sorted(p.name for p in copy.iterdir()) == sorted([artifact.WEIGHTS, artifact.MANIFEST])
    assert artifact.load(artifact.save(copy, heads, dict(before.manifest))).version == "heads-99"
