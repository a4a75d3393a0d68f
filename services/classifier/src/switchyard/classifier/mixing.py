"""Data mixing for training: a hand-written seed set, and de-templated document tasks.

The public pool's summarisation, extraction and writing rows come from a few fixed P3 templates, so a
model learns the templates rather than the tasks. Here the same documents are paired with many natural
instructions (before or after the document), so the instruction, not the document or template, decides
the label. Only documents from training-split rows are used.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from switchyard.classifier.dataset import Example, is_heldout

SEED_FILE = Path(__file__).resolve().parents[3] / "data" / "seed_prompts.jsonl"
AUGMENT_SOURCE = "switchyard_augmented"

INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "summarisation": (
        "Summarise this.",
        "Summarize the text below.",
        "TL;DR?",
        "Give me a short summary of this passage.",
        "What is this text about, in one or two sentences?",
        "Can you condense this into three bullet points?",
        "Write a brief abstract of the following.",
        "Sum this up for me.",
        "Shorten this to a single paragraph.",
        "What are the key points here?",
        "Give me the gist.",
        "Write a summary suitable for a newsletter.",
        "Summarise in under 50 words:",
        "Create a headline and a two-line summary for this.",
        "Recap this text for someone who has no time to read it.",
    ),
    "extraction": (
        "Extract every name mentioned in the text below.",
        "List all the dates and years that appear here.",
        "Pull out the places and organisations mentioned, as a JSON list.",
        "From this passage, extract the numbers and what each one refers to.",
        "Which people are mentioned in this text? Only list them.",
        "Return the key entities as a table.",
        "Find the sentence that states when this happened and quote it exactly.",
        "Extract the main facts as key: value pairs.",
        "Get all proper nouns from the following text.",
        "Identify and extract any quantities or measurements in this text.",
        "Quote the part of the text that answers: who was involved?",
        "Extract the keywords from this paragraph.",
        "Pull the relevant fields (who, what, when, where) out of this.",
    ),
    "writing": (
        "Rewrite this as a short poem.",
        "Turn this into an engaging blog post.",
        "Write a short story inspired by this text.",
        "Rewrite the following in a more formal tone.",
        "Write a persuasive opinion piece based on this.",
        "Write a diary entry from the point of view of someone in this text.",
        "Use this as background and write a dramatic scene.",
        "Rewrite this for children aged eight.",
        "Write a tweet thread that tells this as a story.",
        "Write a speech based on the following facts.",
        "Compose a letter to a friend telling them about this.",
    ),
}


def load_seed(path: Path = SEED_FILE) -> list[Example]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            out.append(
                Example(
                    id=row["id"],
                    source=row["source"],
                    prompt=row["prompt"],
                    label=row["label_type"],
                    native_label=row.get("native_label", ""),
                )
            )
    return out


def _documents(examples: list[Example]) -> list[str]:
    """Plain documents carried inside training-split rows (reading-comprehension contexts)."""
    docs = []
    for ex in examples:
        if is_heldout(ex) or "\nContext:" not in ex.prompt:
            continue
        doc = ex.prompt.split("\nContext:", 1)[1].strip()
        if len(doc) > 200:
            docs.append(doc)
    return sorted(set(docs))


def augment(examples: list[Example], *, per_label: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    docs = _documents(examples)
    if not docs:
        return []
    out = []
    for label, instructions in INSTRUCTIONS.items():
        for i in range(per_label):
            doc = rng.choice(docs)
            instruction = rng.choice(instructions)
            prompt = f"{instruction}\n\n{doc}" if rng.random() < 0.7 else f"{doc}\n\n{instruction}"
            out.append(
                Example(
                    id=f"{AUGMENT_SOURCE}:{label}:{i}",
                    source=AUGMENT_SOURCE,
                    prompt=prompt,
                    label=label,
                    native_label=f"augmented/{label}",
                )
            )
    return out
