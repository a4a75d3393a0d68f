"""Offline operations behind `switchyard classifier train|eval|predict`."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from switchyard.classifier import artifact, dataset, embedding_cache, folds, mixing, training
from switchyard.classifier.classify import Classifier
from switchyard.classifier.config import PROMPT_TOKENS
from switchyard.common.embedding import model_files
from switchyard.common.embedding.embedder import Embedder


def subsample(pool: dataset.Pool, per_source: int | None) -> dataset.Pool:
    """At most `per_source` rows of each source, chosen by a hash of the id (stable across runs)."""
    if not per_source:
        return pool
    by_source: dict[str, list[dataset.Example]] = {}
    for ex in sorted(pool.examples, key=lambda e: hashlib.sha256(e.id.encode()).hexdigest()):
        by_source.setdefault(ex.source, []).append(ex)
    kept = {ex.id for rows in by_source.values() for ex in rows[:per_source]}
    return replace(pool, examples=[ex for ex in pool.examples if ex.id in kept])


def embeddings(
    examples: list[dataset.Example],
    *,
    models_dir: Path | None,
    threads: int,
    cache_dir: Path | None = None,
    max_tokens: int,
) -> tuple[np.ndarray, str]:
    """The prompts' embeddings by the service's encoder (cached), and the sha256 of the model file."""
    files, _ = model_files.ensure_built(models_dir, threads=threads)
    precision = model_files.DEFAULT_PRECISION
    embedder = Embedder(files.path(precision), files.tokenizer, threads=threads, max_tokens=max_tokens)
    model_sha = files.sha256(precision)
    vectors, _ = embedding_cache.cached_embeddings(
        [ex.prompt for ex in examples], embedder=embedder, model_sha256=model_sha, cache_dir=cache_dir
    )
    return vectors, model_sha


def train(
    *,
    data: Path,
    out: Path,
    models_dir: Path | None,
    threads: int,
    seed: int,
    per_source: int | None,
    version: str,
    prompt_tokens: int = PROMPT_TOKENS,
    multilingual: bool = False,
    natural: bool = False,
    other_scripts: float | None = training.OTHER_SCRIPTS_OVER,
    other_languages: bool = True,
) -> dict[str, Any]:
    pool = subsample(dataset.load_pool(data), per_source)
    run = training.TrainingRun(
        seed=seed,
        version=version,
        prompt_tokens=prompt_tokens,
        multilingual=multilingual,
        natural=natural,
        other_scripts=other_scripts,
        other_languages=other_languages,
    )
    vectors, model_sha = embeddings(
        pool.examples, models_dir=models_dir, threads=threads, max_tokens=run.prompt_tokens
    )
    extra = training.mixed_in(pool.examples, run)
    extra_vectors, _ = embeddings(extra, models_dir=models_dir, threads=threads, max_tokens=run.prompt_tokens)
    ml_vectors = None
    if run.other_scripts is not None:
        ml_vectors, _ = embeddings(
            mixing.load_multilingual(), models_dir=models_dir, threads=threads, max_tokens=run.prompt_tokens
        )
    heads, manifest = training.train(
        pool,
        vectors,
        run,
        embedding_model_sha256=model_sha,
        extra=extra,
        extra_vectors=extra_vectors,
        multilingual_vectors=ml_vectors,
    )
    manifest["training"]["seed_prompts_sha256"] = embedding_cache.texts_sha256([ex.prompt for ex in extra])
    manifest["training"]["per_source_cap"] = per_source
    artifact.save(out, heads, manifest)
    return manifest


def evaluate(
    *,
    data: Path,
    artifact_dir: Path | None,
    models_dir: Path | None,
    threads: int,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The heads on the held-out split, the prompts read at `max_tokens` (the heads' training cap by
    default; another one shows what serving at it costs)."""
    heads = artifact.load(artifact_dir)
    pool = dataset.load_pool(data)
    cap = max_tokens or heads.prompt_tokens
    vectors, _ = embeddings(pool.examples, models_dir=models_dir, threads=threads, max_tokens=cap)
    from switchyard.classifier import features

    x_raw = np.concatenate([vectors, features.lexical_matrix([ex.prompt for ex in pool.examples])], axis=1)
    _, held = dataset.split(pool)
    return training.evaluate(heads, pool, x_raw, np.array(held, dtype=np.int64))


def read_jsonl(stream: Iterable[bytes | str]) -> Iterator[tuple[Any, str]]:
    """`(id, prompt)` of each line `{"id": ..., "prompt": "..."}` (`predict --jsonl`, `route --dry-run`): a
    line without an id takes its line number. A line that is not UTF-8, not a JSON object, or whose
    prompt is missing or not a string is skipped, said on stderr with its number; blank lines are
    skipped silently. Read as bytes, so one undecodable line costs only itself."""
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            text = line.decode() if isinstance(line, bytes) else line
        except UnicodeDecodeError as exc:
            print(f"line {n}: skipped, not UTF-8 (byte {exc.start + 1})", file=sys.stderr)
            continue
        try:
            row = json.loads(text)
        except ValueError as exc:
            print(f"line {n}: skipped, not a JSON object: {exc}", file=sys.stderr)
            continue
        if not isinstance(row, dict):
            print(f"line {n}: skipped, not a JSON object but {_json_kind(row)}", file=sys.stderr)
            continue
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            said = "missing" if "prompt" not in row else _json_kind(prompt)
            print(f'line {n}: skipped, "prompt" must be a string, not {said}', file=sys.stderr)
            continue
        yield row.get("id", n), prompt


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else "a string" if isinstance(value, str) else "an object"


def predict(
    *,
    source: Iterable[bytes | str],
    sink: TextIO,
    artifact_dir: Path | None,
    models_dir: Path | None,
    threads: int,
    chunk: int = 512,
    max_tokens: int | None = None,
) -> int:
    classifier = Classifier.load(
        models_dir=models_dir, artifact_dir=artifact_dir, threads=threads, max_tokens=max_tokens
    )
    count = 0
    rows = list(read_jsonl(source))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        for (row_id, _), pred in zip(part, classifier.predict_many([p for _, p in part]), strict=True):
            sink.write(
                json.dumps(
                    {
                        "id": row_id,
                        "type": pred.type,
                        "confidence": pred.confidence,
                        "complexity": pred.complexity,
                    }
                )
                + "\n"
            )
            count += 1
    sink.flush()
    return count


def validate(
    *,
    data: Path,
    models_dir: Path | None,
    threads: int,
    run: training.TrainingRun,
    seeds: tuple[int, ...],
    heldout: bool,
) -> dict[str, Any]:
    """`switchyard classifier folds`: the run's recipe scored on the validation folds (folds.py)."""
    pool = dataset.load_pool(data)
    extra = training.mixed_in(pool.examples, run)
    # the multilingual requests are scored by folds M1 / M2 whether or not the run trains on them
    scored_only = [] if run.multilingual else mixing.load_multilingual()
    rows = pool.examples + extra + scored_only
    vectors = np.concatenate(
        [
            embeddings(part, models_dir=models_dir, threads=threads, max_tokens=run.prompt_tokens)[0]
            for part in (pool.examples, extra + scored_only)
        ]
    )
    n_pool = len(pool.examples)
    trained = np.array(
        [
            (i < n_pool and not dataset.is_heldout(ex)) or n_pool <= i < n_pool + len(extra)
            for i, ex in enumerate(rows)
        ]
    )
    return folds.score(rows, vectors, n_pool=n_pool, trained=trained, run=run, seeds=seeds, heldout=heldout)
