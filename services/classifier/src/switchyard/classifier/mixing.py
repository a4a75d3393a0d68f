"""Data mixing for training: a hand-written seed set, and de-templated document tasks.

The public pool's summarisation, extraction and writing rows come from a few fixed P3 templates, so a
model learns the templates rather than the tasks. Here the same documents are paired with many natural
instructions (before or after the document), so the instruction, not the document or template, decides
the label. Only documents from training-split rows are used.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from switchyard.classifier.dataset import Example, is_heldout

SEED_FILE = Path(__file__).resolve().parents[3] / "data" / "seed_prompts.jsonl"
# Requests in fourteen languages other than English, every label (native_label = the ISO 639-1 code).
MULTILINGUAL_FILE = SEED_FILE.with_name("multilingual_prompts.jsonl")
MULTILINGUAL_SOURCE = "switchyard_multilingual"
# Requests in English written the way people type to an assistant (long briefs, pasted code, logs and
# documents, sloppy or terse wording), every label.
NATURAL_FILE = SEED_FILE.with_name("natural_requests.jsonl")
NATURAL_SOURCE = "switchyard_natural"
SEED_SOURCE = "switchyard_seed"
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


def load_multilingual() -> list[Example]:
    return load_seed(MULTILINGUAL_FILE)


def load_natural() -> list[Example]:
    return load_seed(NATURAL_FILE)


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


OPEN_QUESTION_SOURCE = "switchyard_open_questions"
_OPTIONS_TAIL = re.compile(r"\n\s*A\.\s.*?\nAnswer:\s*$", re.DOTALL)
_NEEDS_OPTIONS = re.compile(r"\b(?:following|these|above|below)\b|_", re.IGNORECASE)
_FRAMES = (
    "{q}", "{q}", "{q}", "Q: {q}", "Question: {q}", "Quick question: {q}", "I was wondering: {q}",
    "{q} Answer briefly.", "{q} Please explain.", "Can you tell me this? {q}", "{q} Just the answer, please.",
)  # fmt: skip


def open_questions(examples: list[Example], *, per_label: int, seed: int) -> list[Example]:
    """Multiple-choice training rows (MMLU) without their options: the same questions asked openly, so
    that the options block and "Answer:" tail stop deciding qa / math / reasoning. Only stems that stand
    on their own (a question mark at the end, no "which of the following")."""
    rng = random.Random(seed)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for ex in examples:
        if is_heldout(ex) or ex.source != "mmlu_routellm":
            continue
        m = _OPTIONS_TAIL.search(ex.prompt)
        if not m:
            continue
        stem = ex.prompt[: m.start()].strip()
        if len(stem) > 20 and stem.endswith("?") and not _NEEDS_OPTIONS.search(stem):
            by_label.setdefault(ex.label, []).append((stem, ex.native_label))
    out = []
    for label in sorted(by_label):
        stems = sorted(set(by_label[label]))
        for i, (stem, subject) in enumerate(rng.sample(stems, min(per_label, len(stems)))):
            out.append(
                Example(
                    id=f"{OPEN_QUESTION_SOURCE}:{label}:{i}",
                    source=OPEN_QUESTION_SOURCE,
                    prompt=rng.choice(_FRAMES).format(q=stem),
                    label=label,
                    native_label=f"open/{subject}",
                )
            )
    return out


CODING_SOURCE = "switchyard_coding_requests"
_MBPP_TASK = re.compile(
    r"^Write a (?:python )?function (?:to|that|which)\s+(.+?)(?:\s+Your code should.*)?$", re.DOTALL
)
_URL = re.compile(r"\s*https?://\S+")
_ASSERT = re.compile(r"```python\n(assert .+?)\n```", re.DOTALL)
_LANGS = (
    "Python", "JavaScript", "TypeScript", "Java", "C++", "C#", "Go", "Rust", "Kotlin", "Ruby", "PHP", "Swift",
    "Bash", "SQL", "R", "Scala",
)  # fmt: skip
_CODING_FRAMES = (
    "How do I {task} in {lang}?",
    "I need a {lang} function that can {task}.",
    "Can you write {lang} code to {task}?",
    "Write a {lang} script to {task}. Please add comments.",
    "In {lang}, what is the cleanest way to {task}?",
    "Implement this in {lang}: {task}.",
    "{lang} question: I want to {task}. My attempt keeps failing, can you help?",
    "Give me a {lang} snippet to {task}, with a couple of unit tests.",
    "What's an efficient algorithm to {task}? Show it in {lang} and explain the complexity.",
    "please help, need to {task} in {lang} asap",
)


def coding_requests(examples: list[Example], *, count: int, seed: int) -> list[Example]:
    """MBPP's one-line tasks ("Write a function to ...", then an assertion) asked the way people ask for
    code: in many languages and phrasings, sometimes with the example call, so the template does not
    define "coding"."""
    rng = random.Random(seed)
    tasks = []
    for ex in examples:
        if is_heldout(ex) or ex.source != "mbpp_plus":
            continue
        m = _MBPP_TASK.match(ex.prompt.strip())
        if m:
            shown = _ASSERT.search(ex.prompt)
            task = _URL.sub("", m.group(1)).strip().rstrip(".")
            tasks.append((task, shown.group(1) if shown else ""))
    tasks = sorted(set(tasks))
    out = []
    for i in range(min(count, len(tasks)) if tasks else 0):
        task, example = tasks[rng.randrange(len(tasks))]
        prompt = rng.choice(_CODING_FRAMES).format(task=task, lang=rng.choice(_LANGS))
        if example and rng.random() < 0.3:
            prompt += f"\nFor example:\n{example}"
        out.append(
            Example(
                id=f"{CODING_SOURCE}:{i}",
                source=CODING_SOURCE,
                prompt=prompt,
                label="coding",
                native_label="generated/coding",
            )
        )
    return out
