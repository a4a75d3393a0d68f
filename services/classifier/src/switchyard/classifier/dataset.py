"""The labeled training pool (see /work/shared/data/classifier/README.md) and its source-disjoint split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POOL = Path("/work/shared/data/classifier/train_pool.jsonl")


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    source: str
    prompt: str
    label: str
    native_label: str
    weak_correct: bool | None = None
    strong_correct: bool | None = None
    scenario: str | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    path: Path
    sha256: str
    examples: list[Example]

    def sources(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for ex in self.examples:
            out.setdefault(ex.source, {}).setdefault(ex.label, 0)
            out[ex.source][ex.label] += 1
        return out


def load_pool(path: Path = DEFAULT_POOL) -> Pool:
    raw = path.read_bytes()
    examples = []
    for line in raw.decode("utf-8").split("\n"):  # not splitlines: prompts hold U+2028
        if not line.strip():
            continue
        row = json.loads(line)
        examples.append(
            Example(
                id=row["id"],
                source=row["source"],
                prompt=row["prompt"],
                label=row["label_type"],
                native_label=row.get("native_label", ""),
                weak_correct=row.get("weak_correct"),
                strong_correct=row.get("strong_correct"),
                scenario=row.get("scenario"),
            )
        )
    return Pool(path, hashlib.sha256(raw).hexdigest(), examples)


# The held-out split. For every label with more than one source, one whole source is held out, so the
# score says how the heads do on prompts from sources they never saw. Two labels come from one source
# each; they are held out by what is closest to a source: extraction by P3 dataset (WikiBio and CommonGen
# prompts held out, AdversarialQA kept), chit-chat by paraphrase scenario (a third of the scenarios).
HELDOUT_SOURCES = frozenset({"arena_hard_v2", "t0_xsum", "taskbench_multimedia", "t0_cbqa", "bbh"})
HELDOUT_GROUPS: dict[str, frozenset[str]] = {
    "t0_advqa_wikibio": frozenset(
        {"wiki_bio_key_content", "wiki_bio_what_content", "common_gen_sentence_to_concepts"}
    ),
}
HELDOUT_SCENARIO_SOURCE = "personality_chat"


def is_heldout(ex: Example) -> bool:
    if ex.source in HELDOUT_SOURCES or ex.native_label in HELDOUT_GROUPS.get(ex.source, frozenset()):
        return True
    if ex.source == HELDOUT_SCENARIO_SOURCE:
        return int(hashlib.sha256((ex.scenario or ex.id).encode()).hexdigest(), 16) % 3 == 0
    return False


def split(pool: Pool) -> tuple[list[int], list[int]]:
    """Indices of (train, held-out) examples."""
    train: list[int] = []
    held: list[int] = []
    for i, ex in enumerate(pool.examples):
        (held if is_heldout(ex) else train).append(i)
    return train, held
