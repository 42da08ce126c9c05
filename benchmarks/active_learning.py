"""Does `suggest` pick texts worth labelling? A simulated labelling loop against random picks (issue 27).

    python benchmarks/active_learning.py --data_dir data/real10k [--sets foldoc,fortunes] [--n 200]
        [--rounds 3] [--strategy margin] [--start 0.2] [--pool 5000] [--seeds 42]
        [--options "--n_epochs 4 --max_seq_len 64"]
    python benchmarks/active_learning.py --tables data/real10k/active_learning.jsonl

For each set, the benchmark's training split (`splits/<set>/train.csv`, as `benchmarks/quality.py`
writes it; at most --pool texts of it, drawn per class) is the pool whose labels we pretend not to
know. A class-stratified --start fraction of it is labelled and trained on (round 0). Then each round
adds --n labels two ways and trains again on each: the N texts `python -m bertclf suggest` ranks
first with the previous round's model of that arm (its labels revealed from the pool), and N texts
drawn at random. Both arms start from the same round-0 model and texts, train with the same options
and seed, and are scored on the same test split (`splits/<set>/test.csv`) with the same validation
split for early stopping. Each training appends one JSON line to --results; the table gives each
round's accuracy and macro-F1 per arm and how many rounds the suggested arm won.

The training options keep a round short on 2 cores (4 epochs, 64 tokens); they are the same for both
arms, so the comparison is fair, but the absolute scores are below a default `make train`'s.
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from quality import train_once, write_splits  # benchmarks/quality.py: the same split files and train runs

DEFAULT_OPTIONS = "--n_epochs 4 --max_seq_len 64"


def stratified(frame: pd.DataFrame, share: float, rng: np.random.Generator) -> pd.Index:
    """The index of `share` of each label's rows (at least one per label), drawn with `rng`."""
    picked = []
    for _, rows in frame.groupby("label", sort=True):
        count = max(1, round(share * len(rows)))
        picked.extend(rng.choice(rows.index.to_numpy(), size=min(count, len(rows)), replace=False).tolist())
    return pd.Index(sorted(picked))


def train(labelled: pd.DataFrame, paths: dict[str, Path], options: list[str], models_dir: Path) -> dict:
    """Train on `labelled` (validation and test: the split files) into `models_dir`; its test scores."""
    data = models_dir / "labelled.csv"
    labelled[["text", "label"]].to_csv(data, index=False)
    splits = ["--validation_data", str(paths["validation"]), "--test_data", str(paths["test"])]
    _, config, seconds = train_once(["--data", str(data), *splits, *options], models_dir)
    metrics = config["metrics"]
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "seconds": round(seconds, 1)}


def suggest(pool: pd.DataFrame, n: int, strategy: str, models_dir: Path) -> pd.Index:
    """The pool rows `python -m bertclf suggest` picks with the latest model in `models_dir`."""
    source, picked = models_dir / "pool.csv", models_dir / "suggested.csv"
    pool[["row", "text"]].to_csv(source, index=False)
    command = [sys.executable, "-m", "bertclf", "suggest", "--models_dir", str(models_dir), "--input", str(source)]
    command += ["--output", str(picked), "--n", str(n), "--strategy", strategy, "--text_column", "text"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    rows = pd.read_csv(picked)["row"].tolist()
    if len(rows) != min(n, len(pool)) or len(set(rows)) != len(rows):
        raise RuntimeError(f"suggest returned {len(rows)} rows ({len(set(rows))} distinct), not {n}")
    return pd.Index(rows)


def simulate(name: str, paths: dict[str, Path], args: argparse.Namespace, seed: int, pretrained: Path):
    """One set's labelling loop; yields a result line per training."""
    rng = np.random.default_rng(seed)
    train_split = pd.read_csv(paths["train"], dtype=str, keep_default_na=False)
    if len(train_split) > args.pool:
        train_split = train_split.loc[stratified(train_split, args.pool / len(train_split), rng)]
    pool = train_split.reset_index(drop=True)
    pool["row"] = pool.index
    options = [*shlex.split(args.options), "--seed", str(seed)]
    base = {"set": name, "seed": seed, "strategy": args.strategy, "n": args.n, "pool": len(pool), "options": options}
    start = stratified(pool, args.start, rng)
    labelled = {"random": start, "suggested": start}
    with tempfile.TemporaryDirectory(prefix="bertclf-al-") as scratch:
        folders = {}
        for arm in ("random", "suggested"):
            folders[arm] = Path(scratch) / arm
            folders[arm].mkdir()
            (folders[arm] / "pretrained").symlink_to(pretrained)
        print(f"{name}: round 0, {len(start)} labelled ...", file=sys.stderr, flush=True)
        first = train(pool.loc[start], paths, options, folders["suggested"])
        yield {**base, "arm": "both", "round": 0, "labelled": len(start), **first}
        for round_ in range(1, args.rounds + 1):
            for arm in ("random", "suggested"):
                unlabelled = pool.drop(labelled[arm])
                if arm == "random":
                    added = pd.Index(rng.choice(unlabelled.index.to_numpy(), size=args.n, replace=False))
                else:
                    added = suggest(unlabelled, args.n, args.strategy, folders[arm])
                labelled[arm] = labelled[arm].union(added)
                print(f"{name}: round {round_}, {arm}, {len(labelled[arm])} labelled ...", file=sys.stderr, flush=True)
                scores = train(pool.loc[labelled[arm]], paths, options, folders[arm])
                yield {**base, "arm": arm, "round": round_, "labelled": len(labelled[arm]), **scores}


def tables(results: list[dict]) -> str:
    """Markdown: per set and seed, each round's scores per arm, the difference, and the tally."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for line in results:
        groups.setdefault((line["set"], line["seed"], line["strategy"], line["n"]), []).append(line)
    summary = []
    for (name, seed, strategy, n), lines in groups.items():
        rounds = sorted({line["round"] for line in lines if line["round"] > 0})
        out.append(f"**{name}** (pool {lines[0]['pool']}, seed {seed}, {strategy}, +{n} per round)\n")
        out.append("| round | labelled | random acc | suggested acc | diff | random F1 | suggested F1 | diff |")
        out.append("|---|---|---|---|---|---|---|---|")
        zero = [line for line in lines if line["round"] == 0]
        if zero:
            z = zero[-1]
            out.append(
                f"| 0 | {z['labelled']} | {z['accuracy']:.3f} | {z['accuracy']:.3f} | | "
                f"{z['macro_f1']:.3f} | {z['macro_f1']:.3f} | |"
            )
        wins = compared = 0
        for r in rounds:
            arms = {line["arm"]: line for line in lines if line["round"] == r}
            if set(arms) != {"random", "suggested"}:
                continue  # an interrupted run's last round
            compared += 1
            a, b = arms["random"], arms["suggested"]
            wins += b["accuracy"] > a["accuracy"]
            out.append(
                f"| {r} | {b['labelled']} | {a['accuracy']:.3f} | {b['accuracy']:.3f} | "
                f"{100 * (b['accuracy'] - a['accuracy']):+.1f} | {a['macro_f1']:.3f} | {b['macro_f1']:.3f} | "
                f"{100 * (b['macro_f1'] - a['macro_f1']):+.1f} |"
            )
        out.append("")
        summary.append(f"- {name} (seed {seed}): suggested beats random on {wins} of {compared} rounds")
    return "\n".join(out + summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="data/real10k", help="where realsets.py wrote the sets")
    parser.add_argument("--sets", default="foldoc,fortunes")
    parser.add_argument("--n", type=int, default=200, help="labels added per round and arm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strategy", default="margin", choices=["margin", "entropy", "diverse"])
    parser.add_argument("--start", type=float, default=0.2, help="share of the pool labelled at round 0")
    parser.add_argument("--pool", type=int, default=5000, help="at most this many training texts as the pool")
    parser.add_argument("--seeds", default="42", help="comma-separated: the draws and the training seed")
    parser.add_argument("--options", default=DEFAULT_OPTIONS, help="train options for every round, both arms")
    parser.add_argument("--model_dir", default="models", help="models folder whose pretrained/ is reused")
    parser.add_argument("--results", help="JSON lines, one per training (default: <data_dir>/active_learning.jsonl)")
    parser.add_argument("--tables", help="print the tables of this results file and stop")
    args = parser.parse_args()
    if args.tables:
        print(tables([json.loads(line) for line in Path(args.tables).read_text().splitlines() if line.strip()]))
        return
    if not 0 < args.start < 1 or args.n < 1 or args.rounds < 1:
        parser.error("--start must be between 0 and 1, --n and --rounds at least 1")
    from bertclf.config import DEFAULT_MODEL
    from bertclf.pretrained import resolve

    resolve(DEFAULT_MODEL, args.model_dir)  # fetched once, before the loop
    pretrained = Path(args.model_dir).resolve() / "pretrained"
    data_dir = Path(args.data_dir)
    results_file = Path(args.results) if args.results else data_dir / "active_learning.jsonl"
    if not results_file.parent.is_dir():
        parser.error(f"--results {results_file}: the folder {results_file.parent} does not exist")
    results = []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        for name in [s for s in args.sets.split(",") if s]:
            data = data_dir / f"{name}.csv"
            if not data.is_file():
                parser.error(f"{data} does not exist; build it first: python benchmarks/realsets.py --sets {name}")
            paths = write_splits(data, data_dir / "splits" / name)
            for line in simulate(name, paths, args, seed, pretrained):
                line["when"] = time.strftime("%Y-%m-%d %H:%M")
                results.append(line)
                with open(results_file, "a", encoding="utf-8") as file:
                    file.write(json.dumps(line) + "\n")
                print(json.dumps(line), file=sys.stderr, flush=True)
    print(tables(results))


if __name__ == "__main__":
    main()
