"""What to label next: `python -m bertclf suggest --input pool.csv --output to_label.csv --n N`.

Ranks unlabelled texts by how much a label would teach the model, and writes the N best with the
model's current guess beside each, so labelling them is correcting rather than starting blank:

- margin (default): the smallest gap between the two most probable labels (multi-label: the
  smallest distance of any label's probability from its threshold);
- entropy: the most spread-out probabilities (multi-label: the sum of each label's binary entropy);
- diverse: among the 10 x N texts with the smallest margin, N spread over the embedding space
  (greedy k-center on the serving graph's embeddings, starting from the most uncertain), so a
  batch of labels does not spend itself on near-duplicates.

The pool is streamed in chunks (labelfile's reader: CSV, TSV or JSONL, every column kept); only
the best candidates are held in memory, whatever the pool's size. The output follows its name's
format, or `--format label-studio` writes Label Studio tasks with the guesses as pre-annotations.
"""

import contextlib
import heapq
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.errors import ConfigError, DataError
from bertclf.inference.labelfile import Writer, file_format, open_input, pick_text_column, read_chunks

STRATEGIES = ("margin", "entropy", "diverse")
DIVERSE_POOL = 10  # diverse: candidates per suggestion, the most uncertain by margin
ADDED = ["suggested_rank", "uncertainty", "prediction", "probability"]


@dataclass(order=True)
class Candidate:
    uncertainty: float
    order: int  # ties: the earlier row first
    row: dict
    answer: dict
    embedding: Any = None


def uncertainty(rows: np.ndarray, strategy: str, thresholds: list[float] | None) -> np.ndarray:
    """How uncertain the model is of each row of probabilities (higher: a label teaches more)."""
    rows = np.clip(np.asarray(rows, dtype=np.float64), 1e-12, 1.0)
    if thresholds is not None:  # multi-label: each class is its own yes/no question
        if strategy == "entropy":
            q = 1.0 - rows
            return -(rows * np.log(rows) + q * np.log(np.clip(q, 1e-12, 1.0))).sum(axis=1)
        return 1.0 - np.abs(rows - np.asarray(thresholds)).min(axis=1)
    if strategy == "entropy":
        return -(rows * np.log(rows)).sum(axis=1)
    top2 = np.sort(rows, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])  # margin: a small gap is a high uncertainty


def k_center(embeddings: np.ndarray, n: int) -> list[int]:
    """n indices spread over `embeddings` (cosine), greedily: start at 0 (the most uncertain), then
    each time the one farthest from everything chosen."""
    if len(embeddings) <= n:
        return list(range(len(embeddings)))
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    chosen = [0]
    distance = 1.0 - unit @ unit[0]
    for _ in range(n - 1):
        distance[chosen] = -np.inf
        pick = int(np.argmax(distance))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - unit @ unit[pick])
    return chosen


def suggest(
    predictor,
    source: str | os.PathLike,
    target: str | os.PathLike,
    n: int,
    strategy: str = "margin",
    text_column: str | None = None,
    chunk_rows: int = 2048,
    output_format: str | None = None,
    escape_formulas: bool = True,
) -> dict:
    """Write the `n` texts of `source` a label would teach most to `target`, most useful first;
    returns a summary (pool, suggested, strategy, text_column, seconds).

    Raises:
        ConfigError: options that do not fit (strategy, n, formats, the same file, columns).
        DataError: the pool breaks off or is not what its name says (with the line).
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise ConfigError(f"--output {target} is the input file; write the suggestions to another file")
    kind = "label-studio" if output_format == "label-studio" else file_format(target, "output")
    if kind == "label-studio" and target.suffix.lower() != ".json":
        raise ConfigError(f"--format label-studio writes a JSON file: name the output .json, not {target.name}")
    if not target.parent.is_dir():
        raise ConfigError(f"--output {target}: the folder {target.parent} does not exist")
    started = time.perf_counter()
    keep = n * DIVERSE_POOL if strategy == "diverse" else n
    best: list[Candidate] = []  # a min-heap on uncertainty: the `keep` most uncertain so far
    counter = itertools.count()
    thresholds = getattr(predictor, "thresholds", None)
    rank_by = "margin" if strategy == "diverse" else strategy
    pool = 0
    with contextlib.ExitStack() as stack:
        reader = open_input(source)
        stack.callback(reader.text.close)
        trained = predictor.config.get("hyperparameters", {}).get("text_column")
        column = pick_text_column(reader.columns, text_column, trained, source)
        clash = sorted(set(ADDED) & set(reader.columns))
        if clash:
            raise ConfigError(f"{source} already has the column(s) {', '.join(clash)} this would add; rename them")
        for chunk in read_chunks(reader, column, chunk_rows):
            texts = [text for _, text, _ in chunk]
            if strategy == "diverse":
                rows, embeddings = predictor.compute(texts, embed=True)
            else:
                rows, embeddings = predictor.predict_proba(texts), None
            scores = uncertainty(rows, rank_by, thresholds)
            guesses = _guesses(predictor, rows)
            for i, ((_, _, row), score) in enumerate(zip(chunk, scores, strict=True)):
                vector = None if embeddings is None else np.asarray(embeddings[i], dtype=np.float32)
                item = Candidate(float(score), -next(counter), row, guesses[i], vector)
                if len(best) < keep:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
            pool += len(chunk)
    if pool == 0:
        raise DataError(f"{source} has no rows to suggest from")
    ranked = sorted(best, reverse=True)
    if strategy == "diverse":
        ranked = [ranked[i] for i in k_center(np.stack([c.embedding for c in ranked]), n)]
    chosen = ranked[:n]
    _write(chosen, target, kind, reader.columns, predictor, escape_formulas)
    return {
        "pool": pool,
        "suggested": len(chosen),
        "strategy": strategy,
        "text_column": column,
        "seconds": time.perf_counter() - started,
    }


def _guesses(predictor, rows: np.ndarray) -> list[dict]:
    labels, probabilities = predictor.decide(rows)
    return [{"prediction": label, "probability": p} for label, p in zip(labels, probabilities, strict=True)]


def _write(chosen: list[Candidate], target: Path, kind: str, columns: list[str], predictor, escape: bool) -> None:
    separator = (predictor.config.get("multi_label") or {}).get("separator", "|")
    writer = Writer(
        target,
        kind,
        columns + ADDED,
        separator if isinstance(separator, str) else "|",
        escape,
        model_version=getattr(predictor, "name", "") if kind == "label-studio" else "",
    )
    try:
        for rank, candidate in enumerate(chosen, start=1):
            answer = candidate.answer
            probability = answer["probability"]
            added = {
                "suggested_rank": rank,
                "uncertainty": round(candidate.uncertainty, 6),
                "prediction": answer["prediction"],
                "probability": [round(float(p), 6) for p in probability]
                if isinstance(probability, list)
                else round(float(probability), 6),
            }
            writer.write(candidate.row, added)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
