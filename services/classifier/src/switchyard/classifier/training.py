"""Reproducible training of the heads from the public pool, evaluated on held-out sources.

Type head: an MLP over [MiniLM embedding, lexical features], trained with weights that give every label
the same total weight and, within a label, every source the same share (so 7k GSM8K rows do not define
"math"). Complexity head: logistic, trained on real outcomes (RouteLLM's MMLU files: did Mixtral-8x7B
answer correctly?) plus weak per-source priors for sources without outcome data.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from switchyard.classifier import dataset, features, languages, mixing, puzzles
from switchyard.classifier.config import PROMPT_TOKENS
from switchyard.classifier.evaluation import (
    calibration,
    classification_report,
    confidence_calibration,
    fit_temperature,
)
from switchyard.classifier.heads import Heads, Mlp, ScriptHead, softmax
from switchyard.classifier.mlp_train import TrainConfig, average_of, train_mlp
from switchyard.common.events.tasks import TASK_TYPES

# P(a cheap model fails), per source without per-item outcomes: coarse priors from the sources'
# published difficulty (arena-hard is selected to be hard; chit-chat and templated P3 tasks are easy).
SOURCE_COMPLEXITY = {
    "arena_hard_v2": 0.8,
    "bbh": 0.5,
    "gsm8k_train": 0.35,
    "mbpp_plus": 0.4,
    "personality_chat": 0.05,
    "taskbench_huggingface": 0.55,
    "taskbench_multimedia": 0.55,
    "t0_xsum": 0.2,
    "t0_cnn_dailymail": 0.25,
    "t0_gigaword": 0.15,
    "t0_advqa_wikibio": 0.3,
    "t0_t0_gen": 0.2,
    "t0_cbqa": 0.45,
}
OUTCOME_SOURCE = "mmlu_routellm"
# Training sources held out of a calibration model whose logits on them fit the softmax temperature: the
# temperature then reflects prompts from sources the model has not seen (never the held-out split's).
CALIBRATION_FOLD = frozenset({"gsm8k_train", "t0_cnn_dailymail", "mbpp_plus", "personality_chat"})
PRIOR_WEIGHT = 0.3  # a prior row counts this much relative to a row with a real outcome
OTHER_SCRIPTS_OVER = 0.3  # heads-6: the non-ASCII share above which the other-scripts head reads a prompt


@dataclass(frozen=True, slots=True)
class TrainingRun:
    seed: int = 20240601
    version: str = "heads-8"
    prompt_tokens: int = PROMPT_TOKENS  # the cap the caller embedded the prompts at; recorded in heads.json
    type_config: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    augment_per_label: int = 300
    puzzles: int = 700
    open_questions: int = 0  # per label (mixing.open_questions); tried, see the README
    coding_requests: int = 0  # mixing.coding_requests; tried, see the README
    multilingual: bool = False  # mixing.load_multilingual in the main head; tried, see the README
    natural: bool = False  # mixing.load_natural, a source of its own in every label
    # a second type head, trained with the multilingual requests too, for prompts whose share of non-ASCII
    # characters is above this (heads.ScriptHead); None: no such head
    other_scripts: float | None = OTHER_SCRIPTS_OVER
    other_languages: bool = True  # heads-8: the other-scripts head also reads other Latin-script languages
    # how the multilingual rows weigh: "source" = a source of their own within each label, "seed" = one
    # source together with the English seed prompts
    multilingual_weight: Literal["seed", "source"] = "seed"
    ensemble: int = 5
    complexity_config: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            hidden=(), epochs=15, lr=3e-3, input_dropout=0.0, dropout=0.0, weight_decay=1e-3
        )
    )


def mixed_in(examples: list[dataset.Example], run: TrainingRun) -> list[dataset.Example]:
    """The rows written for this project that the type head trains on besides the pool's training split:
    seed prompts, de-templated document tasks, puzzles, multilingual requests, open questions, coding
    requests (all built from training-split rows only, deterministic for the run's seed)."""
    extra = mixing.load_seed() + mixing.augment(examples, per_label=run.augment_per_label, seed=run.seed)
    extra += puzzles.generate(run.puzzles, seed=run.seed)
    if run.multilingual:
        extra += mixing.load_multilingual()
    if run.natural:
        extra += mixing.load_natural()
    if run.open_questions:
        extra += mixing.open_questions(examples, per_label=run.open_questions, seed=run.seed)
    if run.coding_requests:
        extra += mixing.coding_requests(examples, count=run.coding_requests, seed=run.seed)
    return extra


def fit_type_head(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    run: TrainingRun,
    rng: np.random.Generator,
    ensemble: int,
) -> tuple[np.ndarray, np.ndarray, Mlp]:
    """The type recipe on unnormalised inputs: (mean, std, head). An ensemble's logits are averaged and
    folded into one MLP (single runs vary a lot on unseen sources)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    models = [
        train_mlp(xs, y, weights=weights, outputs=len(TASK_TYPES), config=run.type_config, rng=rng)
        for _ in range(ensemble)
    ]
    return mean, std, average_of(models) if ensemble > 1 else models[0]


def weight_source(ex: dataset.Example, run: TrainingRun) -> str:
    """The source a row's training weight is shared with (type_weights)."""
    if ex.source == mixing.MULTILINGUAL_SOURCE and run.multilingual_weight == "seed":
        return mixing.SEED_SOURCE
    return ex.source


def type_weights(labels: list[str], sources: list[str]) -> np.ndarray:
    """Equal total weight per label; within a label, equal weight per source."""
    groups: dict[str, dict[str, int]] = {}
    for label, source in zip(labels, sources, strict=True):
        groups.setdefault(label, {}).setdefault(source, 0)
        groups[label][source] += 1
    out = np.empty(len(labels), dtype=np.float32)
    for i, (label, source) in enumerate(zip(labels, sources, strict=True)):
        out[i] = 1.0 / (len(groups) * len(groups[label]) * groups[label][source])
    return out * len(labels)


def complexity_targets(examples: list[dataset.Example]) -> tuple[np.ndarray, np.ndarray]:
    """(target in [0, 1], weight) per example; weight 0 where nothing is known."""
    y = np.zeros(len(examples), dtype=np.float32)
    w = np.zeros(len(examples), dtype=np.float32)
    for i, ex in enumerate(examples):
        if ex.source == OUTCOME_SOURCE and ex.weak_correct is not None:
            y[i], w[i] = (0.0 if ex.weak_correct else 1.0), 1.0
        elif ex.source in SOURCE_COMPLEXITY:
            y[i], w[i] = SOURCE_COMPLEXITY[ex.source], PRIOR_WEIGHT
    return y, w


def complexity_role(ex: dataset.Example) -> str | None:
    """What an MMLU subject is for (by subject hash): "heldout" (a fifth), never trained on nor used to
    choose anything, where the complexity head and routing are reported; "train", the complexity head's
    training rows (also where `switchyard router eval` chooses its static threshold). None: not MMLU."""
    if ex.source != OUTCOME_SOURCE:
        return None
    return "heldout" if int(hashlib.sha256(ex.native_label.encode()).hexdigest(), 16) % 5 == 0 else "train"


def is_complexity_heldout(ex: dataset.Example) -> bool:
    """MMLU subjects held out from the complexity head, for its calibration (a fifth, by subject hash)."""
    return complexity_role(ex) == "heldout"


def train(
    pool: dataset.Pool,
    vectors: np.ndarray,
    run: TrainingRun,
    *,
    embedding_model_sha256: str,
    extra: list[dataset.Example] | None = None,
    extra_vectors: np.ndarray | None = None,
    multilingual_vectors: np.ndarray | None = None,
) -> tuple[Heads, dict[str, Any]]:
    """Trains on the training split (plus `extra`, see mixing.py) and evaluates on the held-out split.
    With `run.other_scripts`, `multilingual_vectors` are mixing.load_multilingual()'s embeddings."""
    examples = pool.examples
    extra = extra or []
    lex = features.lexical_matrix([ex.prompt for ex in examples])
    x_all = np.concatenate([vectors, lex], axis=1).astype(np.float32)
    train_idx, held_idx = (np.array(i, dtype=np.int64) for i in dataset.split(pool))
    label_index = {label: i for i, label in enumerate(TASK_TYPES)}
    y = np.array([label_index[ex.label] for ex in examples], dtype=np.int64)
    x_type, y_type = x_all[train_idx], y[train_idx]
    train_rows = [examples[i] for i in train_idx]
    if extra:
        assert extra_vectors is not None and len(extra_vectors) == len(extra)
        x_extra = np.concatenate(
            [extra_vectors, features.lexical_matrix([ex.prompt for ex in extra])], axis=1
        )
        x_type = np.concatenate([x_type, x_extra.astype(np.float32)])
        y_type = np.concatenate([y_type, np.array([label_index[ex.label] for ex in extra], dtype=np.int64)])
        train_rows += extra
    rng = np.random.default_rng(run.seed)
    tw = type_weights([ex.label for ex in train_rows], [weight_source(ex, run) for ex in train_rows])
    mean, std, type_head = fit_type_head(x_type, y_type, tw, run, rng, run.ensemble)
    x = (x_all - mean) / std

    temperature, temperature_fit = _fit_temperature(x_type, y_type, train_rows, tw, run)

    cy, cw = complexity_targets(examples)
    c_train = np.array(
        [i for i in train_idx if cw[i] > 0 and not is_complexity_heldout(examples[i])], dtype=np.int64
    )
    complexity_head = train_mlp(
        x[c_train],
        cy[c_train],
        weights=cw[c_train],
        outputs=1,
        config=run.complexity_config,
        rng=rng,
        binary=True,
    )

    other_scripts: ScriptHead | None = None
    other_fit: dict[str, Any] = {}
    if run.other_scripts is not None:
        assert multilingual_vectors is not None, "the other-scripts head needs the multilingual rows"
        other_scripts, other_fit = _other_scripts_head(x_type, y_type, train_rows, multilingual_vectors, run)
    heads = Heads(
        version=run.version,
        labels=TASK_TYPES,
        mean=mean,
        std=std,
        type_head=type_head,
        complexity_head=complexity_head,
        temperature=temperature,
        other_scripts=other_scripts,
    )
    metrics = evaluate(heads, pool, x_all, held_idx)
    manifest = {
        "lexical_features": features.FEATURES_VERSION,
        "embedding_dim": int(vectors.shape[1]),
        "embedding_model_sha256": embedding_model_sha256,
        "prompt_tokens": run.prompt_tokens,
        "training_data_sha256": pool.sha256,
        "metrics": metrics,
        "training": {
            "seed": run.seed,
            "data": str(pool.path),
            "rows_train": len(train_idx),
            "ensemble": run.ensemble,
            "rows_mixed_in": {
                s: sum(1 for ex in extra if ex.source == s) for s in sorted({e.source for e in extra})
            },
            "rows_heldout": len(held_idx),
            "heldout_sources": sorted(dataset.HELDOUT_SOURCES),
            "heldout_groups": {k: sorted(v) for k, v in dataset.HELDOUT_GROUPS.items()},
            "type_config": asdict(run.type_config),
            "temperature_fit": temperature_fit,
            "complexity_config": asdict(run.complexity_config),
            "complexity_source_priors": SOURCE_COMPLEXITY,
            "sources": pool.sources(),
        },
    }
    if other_fit:
        manifest["other_scripts"] = other_fit
    return heads, manifest


def _other_scripts_head(
    x_type: np.ndarray,
    y_type: np.ndarray,
    rows: list[dataset.Example],
    ml_vectors: np.ndarray,
    run: TrainingRun,
) -> tuple[ScriptHead, dict[str, Any]]:
    """The main head's training rows plus the multilingual requests, the same recipe otherwise (its own
    random stream, so the main head's weights do not depend on whether this one is trained)."""
    ml = mixing.load_multilingual()
    assert len(ml_vectors) == len(ml)
    if run.multilingual:  # already among the main head's rows
        ml, ml_vectors = [], ml_vectors[:0]
    x_ml = np.concatenate([ml_vectors, features.lexical_matrix([ex.prompt for ex in ml])], axis=1)
    x = np.concatenate([x_type, x_ml.astype(np.float32)])
    label_index = {label: i for i, label in enumerate(TASK_TYPES)}
    y = np.concatenate([y_type, np.array([label_index[ex.label] for ex in ml], dtype=np.int64)])
    rows = rows + ml
    tw = type_weights([ex.label for ex in rows], [weight_source(ex, run) for ex in rows])
    mean, std, head = fit_type_head(x, y, tw, run, np.random.default_rng(run.seed + 2), run.ensemble)
    temperature, fit = _fit_temperature(x, y, rows, tw, run)
    assert run.other_scripts is not None
    script_head = ScriptHead(mean, std, head, temperature, run.other_scripts, run.other_languages)
    return script_head, {"rows_multilingual": len(ml), "temperature_fit": fit}


def _fit_temperature(
    x: np.ndarray, y: np.ndarray, rows: list[dataset.Example], weights: np.ndarray, run: TrainingRun
) -> tuple[float, dict[str, Any]]:
    """A model trained without CALIBRATION_FOLD's sources; the temperature that best fits its logits there."""
    fold = np.array([ex.source in CALIBRATION_FOLD for ex in rows])
    if not fold.any() or fold.all():
        return 1.0, {"skipped": "no calibration fold in this data"}
    xt = x[~fold]
    mean, std = xt.mean(axis=0), xt.std(axis=0) + 1e-6
    model = train_mlp(
        (xt - mean) / std,
        y[~fold],
        weights=weights[~fold],
        outputs=len(TASK_TYPES),
        config=run.type_config,
        rng=np.random.default_rng(run.seed + 1),
    )
    logits = model((x[fold] - mean) / std)
    t = fit_temperature(logits, y[fold])
    before = confidence_calibration(softmax(logits), y[fold])
    after = confidence_calibration(softmax(logits / t), y[fold])
    return t, {
        "temperature": t,
        "fold_sources": sorted(CALIBRATION_FOLD),
        "n": int(fold.sum()),
        "fold_accuracy": round(float((logits.argmax(axis=1) == y[fold]).mean()), 4),
        "fold_ece_before": before["ece"],
        "fold_ece_after": after["ece"],
    }


def evaluate(heads: Heads, pool: dataset.Pool, x_raw: np.ndarray, held_idx: np.ndarray) -> dict[str, Any]:
    examples = pool.examples
    xs = (x_raw - heads.mean) / heads.std
    label_index = {label: i for i, label in enumerate(TASK_TYPES)}
    langs = languages.flags([examples[i].prompt for i in held_idx]) if heads.reads_languages else None
    probs = heads.type_probs(x_raw[held_idx].astype(np.float32), other_language=langs)
    y_true = np.array([label_index[examples[i].label] for i in held_idx], dtype=np.int64)
    report = classification_report(y_true, probs.argmax(axis=1), TASK_TYPES)
    by_source: dict[str, float] = {}
    for source in sorted({examples[i].source for i in held_idx}):
        sel = np.array([examples[i].source == source for i in held_idx])
        by_source[source] = round(float((probs.argmax(axis=1)[sel] == y_true[sel]).mean()), 4)
    report["accuracy_by_source"] = by_source
    if heads.other_scripts is not None:
        lexical = x_raw[held_idx][:, -features.DIM :]
        report["other_scripts_rows"] = int(heads.other_scripts.takes(lexical, langs).sum())
    confidence = confidence_calibration(probs, y_true)
    raw = confidence_calibration(softmax(heads.type_head(xs[held_idx])), y_true)
    confidence["ece_at_temperature_1"] = raw["ece"]  # the main head's alone
    confidence["temperature"] = heads.temperature

    c_idx = np.array(
        [i for i, ex in enumerate(examples) if is_complexity_heldout(ex) and ex.weak_correct is not None],
        dtype=np.int64,
    )
    complexity = 1.0 / (1.0 + np.exp(-heads.complexity_head(xs[c_idx])[:, 0]))
    failed = np.array([0.0 if examples[i].weak_correct else 1.0 for i in c_idx])
    return {
        "type_heldout": report,
        "type_confidence_heldout": confidence,
        "complexity_heldout_mmlu_subjects": calibration(complexity, failed),
    }
