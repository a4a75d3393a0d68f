"""`switchyard classifier folds` as a user reruns a choice: a real process, the real encoder, the mixed-in and
multilingual rows, a small pool with the sources the folds are cut from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.classifier.dataset import Example, is_heldout
from switchyard.classifier.folds import in_fold_b
from switchyard.classifier.training import CALIBRATION_FOLD
from switchyard.common.embedding.model_files import ensure_built

pytestmark = pytest.mark.integration

STORY = (
    "The harbour town of Kell rebuilt its lighthouse in {n} after a storm tore the lamp room away. "
    "Fishermen paid for half of the work, the county for the rest, and the new light reaches {n} metres "
    "further out to sea than the old one did, which the harbour master says has already saved two boats."
)


def _pool() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def add(source: str, label: str, prompt: str, native: str = "") -> None:
        rows.append({"id": f"{source}:{len(rows)}", "source": source, "prompt": prompt, "label_type": label,
                     "native_label": native or label, "license": "test"})  # fmt: skip

    for n in range(24):
        add(
            "gsm8k_train",
            "math",
            f"Tom has {n + 3} apples and buys {2 * n} more. How many apples does he have?",
        )
        add(
            "mbpp_plus",
            "coding",
            f"Write a function to return the sum of the first {n + 2} elements of a list.",
        )
        add(
            "t0_cnn_dailymail",
            "summarisation",
            f"Summarise the article.\nContext: {STORY.format(n=1900 + n)}",
        )
        add(
            "personality_chat", "chitchat", ["Hi there, how are you?", "Tell me a joke!", "I'm bored."][n % 3]
        )
        add("t0_gigaword", "summarisation", f"Write a headline for: the council approved budget number {n}.")
        add("mmlu_routellm", "qa", f"Which river flows through city number {n}?", native=f"geography_{n % 4}")
        add(
            "mmlu_routellm",
            "reasoning",
            f"If all A are B and {n} B are C, are some A C?",
            native="formal_logic",
        )
        add(
            "taskbench_huggingface", "coordination", f"Transcribe audio {n}.wav, translate it, then email it."
        )
        add("t0_advqa", "extraction", f"Extract the year from the text.\nContext: {STORY.format(n=1800 + n)}")
        add("t0_xsum", "summarisation", f"Give a one-line summary: a library opened branch number {n}.")
    return rows


def test_folds_score_a_recipe_per_fold_and_seed_and_the_guard_on_request(tmp_path: Path) -> None:
    ensure_built()
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _pool()), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "classifier", "folds", "--data", str(data),
         "--seeds", "1,2", "--heldout", "--json"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    folds = result["folds"]
    assert set(folds) == {"A", "B", "M1", "M2"}
    rows = [Example(id=str(r["id"]), source=str(r["source"]), prompt="", label=str(r["label_type"]),
                    native_label=str(r["native_label"])) for r in _pool()]  # fmt: skip
    in_a = [e for e in rows if e.source in CALIBRATION_FOLD and not is_heldout(e)]
    assert 0 < len([e for e in in_a if e.source == "personality_chat"]) < 24  # its held-out third is not
    assert folds["A"]["n"] == len(in_a)
    assert folds["B"]["n"] == len([e for e in rows if in_fold_b(e)]) > 48
    for fold in folds.values():
        assert len(fold["f1"]) == 2 and all(0.0 <= f <= 1.0 for f in fold["f1"])
    assert result["validation"] == pytest.approx((folds["A"]["mean"] + folds["B"]["mean"]) / 2, abs=1e-4)
    assert 0.0 <= result["heldout"] <= 1.0
    assert folds["M1"]["n"] + folds["M2"]["n"] == 844  # every multilingual request, scored either way
