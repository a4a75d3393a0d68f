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
        '{"id": "no prompt"}',
        '{"id": "a number", "prompt": 123}',
        "[1, 2]",
    ]
    source = tmp_path / "prompts.jsonl"
    source.write_bytes(("\n".join(rows) + "\n").encode() + b'{"id": "latin-1", "prompt": "caf\xe9"}\n')
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
    # a prompt that is not a string is no prompt (before: `123` was classified as the text "123", a
    # missing one as ""), and a line that is not UTF-8 costs only itself (before: a traceback, no output)
    assert 'line 7: skipped, "prompt" must be a string, not missing' in done.stderr
    assert 'line 8: skipped, "prompt" must be a string, not a number' in done.stderr
    assert "line 9: skipped, not a JSON object but an array" in done.stderr
    assert "line 10: skipped, not UTF-8 (byte 33)" in done.stderr


@pytest.mark.parametrize("command", [["classifier", "predict"], ["route", "--dry-run"]])
def test_an_input_file_that_cannot_be_read_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    for path, said in ((tmp_path / "missing.jsonl", "no such file"), (tmp_path, "not a file")):
        done = subprocess.run(
            [sys.executable, "-m", "switchyard.cli.main", *command, "--jsonl", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert f"argument --jsonl: {path}: {said}" in done.stderr
        assert "Traceback" not in done.stderr


def test_offline_classification_keeps_numpy_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")  # an operator's own setting wins
    one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
