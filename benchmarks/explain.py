"""Are the explanations faithful, and what do they cost? (issue 27)

    python benchmarks/explain.py --models_dir M [--model_dir F] --data test.csv [--texts 1000] [--k 3]

For each text of --data (a CSV with a text column, e.g. a test split the model never trained on)
that has more than k words the model reads: the probability of the label explained (the model's
most probable), then of the text with its k highest-weighted words deleted, and with k random read
words deleted (the mean of --draws draws). The explanation is faithful for that text when deleting
its top words lowers the probability more than deleting random ones. The issue's bar: on at least
80% of the texts. Then the distribution of (top drop - random drop), and the cost: texts/s of
`explain` against `predict_proba` on the same texts, one process, every core.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from bertclf.config import TEXT_COLUMNS, usual_column
from bertclf.inference.explain import explain, spans
from bertclf.inference.predictor import Predictor
from bertclf.registry import chosen_model_folder


def deleted(text: str, cut: list[tuple[int, int]], indices: set[int]) -> str:
    """`text` with the words at `indices` deleted (the rest joined by single spaces)."""
    return " ".join(text[start:end] for i, (start, end) in enumerate(cut) if i not in indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models_dir", default="models")
    parser.add_argument("--model_dir", help="model folder (default: the latest)")
    parser.add_argument("--data", required=True, help="CSV of texts (a text column)")
    parser.add_argument("--texts", type=int, default=1000, help="at most this many texts")
    parser.add_argument("--k", type=int, default=3, help="words deleted")
    parser.add_argument("--draws", type=int, default=5, help="random deletions averaged per text")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    predictor = Predictor(chosen_model_folder(args.models_dir, args.model_dir))
    with open(args.data, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    column = usual_column(list(rows[0]), TEXT_COLUMNS)
    if column is None:
        sys.exit(f"{args.data}: no text column ({', '.join(TEXT_COLUMNS)})")
    texts = [row[column] for row in rows][: args.texts]

    started = time.perf_counter()
    predictor.predict_proba(texts)
    predict_seconds = time.perf_counter() - started
    started = time.perf_counter()
    explained = explain(predictor, texts)
    explain_seconds = time.perf_counter() - started

    rng = np.random.default_rng(args.seed)
    classes = list(predictor.classes)
    probes, owners = [], []  # (kind, text index): the top-k deletion, then `draws` random ones
    kept = []
    for i, (text, why) in enumerate(zip(texts, explained, strict=True)):
        read = [j for j, word in enumerate(why.words) if word["read"]]
        if len(read) <= args.k:
            continue
        kept.append(i)
        cut = spans(text)
        top = sorted(read, key=lambda j: -why.words[j]["weight"])[: args.k]
        probes.append(deleted(text, cut, set(top)))
        owners.append(("top", i))
        for _ in range(args.draws):
            probes.append(deleted(text, cut, set(rng.choice(read, args.k, replace=False).tolist())))
            owners.append(("random", i))
    probabilities = predictor.predict_proba(probes)
    drops: dict[int, dict[str, list[float]]] = {i: {"top": [], "random": []} for i in kept}
    for (kind, i), row in zip(owners, probabilities, strict=True):
        k = classes.index(explained[i].label)
        drops[i][kind].append(explained[i].probability - float(row[k]))
    margin = np.array([drops[i]["top"][0] - float(np.mean(drops[i]["random"])) for i in kept])
    faithful = float(np.mean(margin > 0)) if len(margin) else float("nan")

    words = [sum(w["read"] for w in e.words) for e in explained]
    print(f"model: {predictor.name} ({predictor.precision} on {predictor.runtime}); data: {Path(args.data).name}")
    print(f"texts: {len(texts)} ({len(kept)} with more than {args.k} words read); median read {np.median(words):.0f}")
    print(f"faithful (deleting the top {args.k} words lowers the label's probability more than {args.k} random ones):")
    print(f"  {faithful:.1%} of texts (bar: 80%)")
    quantiles = np.quantile(margin, [0.1, 0.25, 0.5, 0.75, 0.9]) if len(margin) else []
    print("  top drop - random drop, quantiles 10/25/50/75/90%: " + ", ".join(f"{q:+.3f}" for q in quantiles))
    top = [drops[i]["top"][0] for i in kept]
    rand = [float(np.mean(drops[i]["random"])) for i in kept]
    print(f"  mean drop: top {np.mean(top):.3f}, random {np.mean(rand):.3f}")
    print(
        f"cost: predict {len(texts) / predict_seconds:,.1f} texts/s, explain {len(texts) / explain_seconds:,.1f} "
        f"texts/s ({explain_seconds / predict_seconds:.1f}x the time; {sum(words) + len(texts):,} texts scored "
        f"for {len(texts):,}: {(sum(words) + len(texts)) / explain_seconds:,.1f} per second)"
    )


if __name__ == "__main__":
    main()
