"""`switchyard classifier predict --jsonl FILE` as outside evaluations run it: a real process, the real
encoder, one output line per input line, ids kept, bad lines reported and skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.classifier.blas import one_blas_thread
from switchyard.common.embedding.model_files import ensure_built
from switchyard.common.events.tasks import TASK_TYPES

pytestmark = pytest.mark.integration


def test_predict_writes_one_line_per_prompt(tmp_path: Path) -> None:
    ensure_built()
    rows = [
        '{"id": "code", "prompt": "Write a Python function that reverses a linked list."}',
        '{"id": 2, "prompt": ""}',
        "not json at all",
        "",
        '{"prompt": "Summarise the following article in two sentences: the city council met on Tuesday."}',
        '{"id": "binary", "prompt": "\\u0000\\u0001\\u0002 \\ud800"}',
    ]
    source = tmp_path / "prompts.jsonl"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "classifier", "predict", "--jsonl", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["id"] for o in out] == ["code", 2, 5, "binary"]  # a row without an id gets its line number
    for o in out:
        assert set(o) == {"id", "type", "confidence", "complexity"}
        assert o["type"] in TASK_TYPES and 0 <= o["confidence"] <= 1 and 0 <= o["complexity"] <= 1
    assert out[0]["type"] == "coding"
    assert "line 3: skipped, not a JSON object" in done.stderr


def test_offline_classification_keeps_numpy_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")  # an operator's own setting wins
    one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
