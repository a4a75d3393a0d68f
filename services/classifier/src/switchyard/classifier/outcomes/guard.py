"""The public no-regression guard on a promotion from the ledger.

Retraining judges candidates on the ledger's newest tasks, which say how the heads serve this platform's
recent traffic; they say nothing of the rest of what the heads were built to read, and a few
organisations' labels can pull a head away from it. So a head the ledger holdout promoted must also keep
its macro-F1 on the public held-out split (`switchyard classifier eval`'s sources, never trained on)
within `MAX_DROP` of the current heads'; otherwise the current heads stay, and the decision says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from switchyard.classifier import dataset, features, languages
from switchyard.classifier.evaluation import classification_report
from switchyard.classifier.heads import Heads
from switchyard.classifier.outcomes.retrain import Decision
from switchyard.common.events.tasks import TASK_TYPES

# How much held-out macro-F1 a promoted head may give up: about the spread of retraining the same recipe
# with another seed (0.007-0.01, services/classifier/README.md), so noise passes and a real loss does not.
MAX_DROP = 0.01


@dataclass(frozen=True, slots=True)
class HeldOut:
    """The public held-out split's inputs ([embedding, lexical features], unnormalised) and labels."""

    x_raw: np.ndarray
    y: np.ndarray
    other_language: np.ndarray  # [n] bool: in another Latin-script language (for heads that read them)


def macro_f1(heads: Heads, held: HeldOut) -> float:
    probs = heads.type_probs(held.x_raw, other_language=held.other_language)
    return float(classification_report(held.y, probs.argmax(axis=1), TASK_TYPES)["macro_f1"])


def check(decision: Decision, current: Heads, held: HeldOut, *, max_drop: float = MAX_DROP) -> Decision:
    """`decision` if it keeps the heads or its heads lose at most `max_drop` of macro-F1 on the public
    held-out split; otherwise the current heads, with the reason. The numbers go in the report either way."""
    if not decision.promoted:
        return decision
    before, after = round(macro_f1(current, held), 4), round(macro_f1(decision.heads, held), 4)
    report = {
        **decision.report,
        "public_heldout": {"current": before, "candidate": after, "n": len(held.y), "max_drop": max_drop},
    }
    if after < before - max_drop:
        kept = (
            f"not promoted: public held-out macro-F1 {before} -> {after} (n={len(held.y)}), more than "
            f"{max_drop} lower: current heads kept"
        )
        return Decision(False, current, [*decision.reasons, kept], report)
    fine = f"public held-out macro-F1 {before} -> {after} (n={len(held.y)}; at most {max_drop} lower allowed)"
    return replace(decision, reasons=[*decision.reasons, fine], report=report)


def held_out(data: Path, *, models_dir: Path | None, threads: int, max_tokens: int) -> HeldOut:
    """The held-out split of the pool at `data`, embedded by the service's encoder at `max_tokens` (the
    embedding cache keeps them: ~1 min the first time on 2 cores, a second after)."""
    from switchyard.classifier import offline

    pool = dataset.load_pool(data)
    _, held = dataset.split(pool)
    examples = [pool.examples[i] for i in held]
    if not examples:
        raise ValueError(f"{data} has no prompt of the held-out sources")
    prompts = [ex.prompt for ex in examples]
    vectors, _ = offline.embeddings(examples, models_dir=models_dir, threads=threads, max_tokens=max_tokens)
    x_raw = np.concatenate([vectors, features.lexical_matrix(prompts)], axis=1).astype(np.float32)
    label_index = {label: i for i, label in enumerate(TASK_TYPES)}
    y = np.array([label_index[ex.label] for ex in examples], dtype=np.int64)
    return HeldOut(x_raw, y, np.asarray(languages.flags(prompts), dtype=bool))


Loader = Callable[[], HeldOut]
