"""Accuracy of `make train` on real text sets, one lever at a time, beside two references.

    python benchmarks/realsets.py                      # builds data/real/<set>.csv (once)
    python benchmarks/quality.py [--sets debian,fortunes,foldoc] [--levers default,seq_auto,...]
        [--seeds 42,1,2] [--hf_python .venv-hf/bin/python] [--results data/real/results.jsonl]

Each set is split once (80/10/10, stratified, seed 42, exactly as `make train` splits) into
`data/real/splits/<set>/{train,validation,test}.csv`, so every run and both references see the same
texts. A lever is a list of `python -m bertclf train` options added to the defaults; each run trains
into a scratch models folder (the pretrained checkpoint is linked, not copied) and appends one JSON
line with the test split's accuracy, macro-F1, the TF-IDF baseline the run fits, and its wall time.
With `--seeds`, every lever runs once per seed (`--seed`: the split, written to
`splits/<set>-seed<N>/`, and the fit's shuffling, dropout and head; the default seed keeps
`splits/<set>/`), the row named `lever (seed N)`, and the table ends with each lever's mean and
spread (max - min) over the seeds: a difference between levers smaller than the spread is noise.
Then the paired comparison: each lever minus the default on the same set and seed, its mean and
range, and a verdict (wins or loses only when every seed agrees and the mean exceeds the default's
spread). The 10,000-text sets: `python benchmarks/realsets.py --out data/real10k`, then
`--data_dir data/real10k --seeds 42,1,2`.

With `--hf_python`, the Hugging Face + PyTorch reference (`benchmarks/hf_finetune.py`: the same
checkpoint, 3 epochs, lr 1e-4, batch 32, max length 128, linear warmup and decay) runs on the same
splits, once per seed (its own seed too), recorded as the run `hf_pytorch`; the paired table then
holds the default against it on each split: our margin over a plain fine-tune (`--levers ""
--hf_python ...` runs the reference alone). Its interpreter needs `torch` and `transformers`, which
bertclf does not:

    python -m venv .venv-hf && .venv-hf/bin/pip install torch==2.13.0 transformers scikit-learn

The tables at the end are Markdown; then each run's test accuracy in each serving precision the
export measured (fp32, int8, bf16) and the one `--precision auto` serves. docs/benchmarks.md shows
the tables of benchmarks/results/quality-10k.jsonl (the 10,000-text runs' lines, copied there from
the --results file): docs/hooks.py renders them with `docs_tables` at every site build.
"""

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEVERS = {
    "default": [],
    "layer_decay_0.8": ["--layer_decay", "0.8"],
    "max_seq_len_256": ["--max_seq_len", "256"],
    "max_seq_len_auto": ["--max_seq_len", "auto"],
    "epochs_4": ["--n_epochs", "4"],  # the default before 8 (README: every "--n_epochs 4" row)
    "long_text_window": ["--long_text", "window"],
    "float32": ["--precision", "float32"],  # against the default auto (bfloat16 where the CPU computes it)
    "global_clip": ["--gradient_clipping", "global"],  # BERT's clipping by the whole gradient's norm
    "label_smoothing_0.1": ["--label_smoothing", "0.1"],
    "ema_0.99": ["--ema", "0.99"],  # the weights' moving average over about the last 100 steps
    "class_weight_none": ["--class_weight", "none"],  # against auto (balanced on sets 10x imbalanced)
    "class_weight_balanced": ["--class_weight", "balanced"],
    "class_weight_sample": ["--class_weight", "sample"],  # class-balanced sampling instead of weights
    # Held-out protocol (HOLDOUT): trained on the benchmark's train + validation files, scored on its test
    # file, which neither run sees; refit_all against default_holdout is what --refit all gains.
    "default_holdout": [],
    "refit_all": ["--refit", "all"],
}
HOLDOUT = {"default_holdout", "refit_all"}
BASELINE = {"refit_all": "default_holdout"}  # the lever each is paired with, when not the default
REFERENCE = "hf_pytorch"  # the Hugging Face fine-tune's runs (--hf_python): the default is paired against it
ABSTAIN_TARGETS = (0.9, 0.95)  # target_precision values whose realised test precision each run reports
ROOT = Path(__file__).resolve().parent.parent


def write_splits(data: Path, folder: Path, seed: int | None = None) -> dict[str, Path]:
    """The 80/10/10 split `make train --seed <seed>` makes of `data` (default: its default seed),
    written as three CSV files (once)."""
    from bertclf.config import TrainConfig
    from bertclf.training.data import load_splits

    paths = {part: folder / f"{part}.csv" for part in ("train", "validation", "test")}
    if all(path.is_file() and path.stat().st_mtime >= data.stat().st_mtime for path in paths.values()):
        return paths
    import pandas as pd

    splits = load_splits(TrainConfig(data=str(data), **({} if seed is None else {"seed": seed})))
    folder.mkdir(parents=True, exist_ok=True)
    for part, path in paths.items():
        examples = getattr(splits, part)
        pd.DataFrame({"text": examples.texts, "label": examples.labels}).to_csv(path, index=False)
    return paths


def machine(path: str = "/proc/cpuinfo") -> str:
    """The CPU a run trained on, which the tables pair by: its model name and how it computes bfloat16
    (amx_bf16, avx512_bf16 or neither), on which the default precision's arithmetic depends."""
    from bertclf.cpu import cpu_flags

    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return "unknown"
    name = next((line.partition(":")[2].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = cpu_flags(path)
    bf16 = next((flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags), "no bf16")
    return f"{name} ({bf16})"


def train_once(options: list[str], models_dir: Path) -> tuple[Path, dict, float]:
    """Run `python -m bertclf train OPTIONS --models_dir MODELS_DIR` in a subprocess: the exported
    folder, its model_config.json and the run's wall seconds. A failed run raises with its stderr's
    tail (the benchmarks run for hours; the error must say what broke)."""
    command = [sys.executable, "-m", "bertclf", "train", *options, "--models_dir", str(models_dir)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    latest = json.loads((models_dir / "latest_model_config.json").read_text())
    folder = models_dir / latest["model_dir"]  # relative to the models folder (an absolute one stays as it is)
    return folder, json.loads((folder / "model_config.json").read_text()), seconds


def run_bertclf(paths: dict[str, Path], options: list[str], models_dir: Path, holdout: bool = False) -> dict:
    """One `train` run on the set's split files and what it measured on the test file. `holdout`: the
    run gets the train and validation files joined as its DATA (make train splits its own validation
    and test off it) and the test file is scored afterwards, by the exported model: text no part of
    the run (nor a refit) saw."""
    if holdout:
        joined = models_dir / "train+validation.csv"
        import pandas as pd

        pd.concat([pd.read_csv(paths["train"]), pd.read_csv(paths["validation"])]).to_csv(joined, index=False)
        data = ["--data", str(joined)]
    else:
        data = ["--data", str(paths["train"]), "--validation_data", str(paths["validation"])]
        data += ["--test_data", str(paths["test"])]
    folder, config, seconds = train_once([*data, *options], models_dir)
    served = Served(folder, paths)
    blend = None if config.get("multi_label") or holdout else tfidf_blend(served, paths)
    long_text = json.loads((folder / "metrics.json").read_text()).get("long_text")  # the truncated scores beside
    metrics = config["metrics"]
    scores = served.held_out() if holdout else metrics
    # A held-out run trained on the validation file: a threshold chosen there would be chosen on seen text.
    abstaining = None if config.get("multi_label") or holdout else served.abstaining()
    shutil.rmtree(folder)
    return {
        **({"blend": blend} if blend else {}),
        **({"abstain": abstaining} if abstaining else {}),
        **({"split_test_accuracy": metrics["accuracy"], "refit": config["training"].get("refit")} if holdout else {}),
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        **({"micro_f1": scores["micro_f1"]} if "micro_f1" in scores else {}),
        "tfidf_accuracy": metrics["baseline"]["accuracy"],
        "tfidf_macro_f1": metrics["baseline"]["macro_f1"],
        **({"tfidf_micro_f1": metrics["baseline"]["micro_f1"]} if "micro_f1" in metrics["baseline"] else {}),
        "seconds": round(seconds, 1),
        "epochs_run": config["training"]["epochs_run"],
        "best_epoch": config["training"]["best_epoch"],
        "fit_seconds": config["training"]["seconds"],
        "examples_per_second": config["training"]["examples_per_second"],
        "calibration": metrics.get("calibration"),
        "long_text": long_text,
        "val_accuracy": config["training"]["history"].get("val_accuracy"),
        "hyperparameters": config["hyperparameters"],
        "serving_graphs": precisions(config.get("serving_graphs")),
    }


def precisions(record: dict | None) -> dict | None:
    """What the export measured of each serving precision on the test split, and what auto chose."""
    if not record:
        return None
    keys = ("accuracy", "macro_f1", "micro_f1", "changed_share", "max_probability_change")
    measured = {
        name: {key: part[key] for key in keys if key in part}
        for name in ("fp32", "int8", "bf16")
        if isinstance(part := record.get(name), dict)
    }
    return {**measured, "auto": record.get("auto"), "auto_reason": record.get("auto_reason")}


def decisions(results: list[dict]) -> str:
    """Markdown rows: each run's test accuracy per serving precision and what `--precision auto` served."""
    rows = [
        "| set | run | fp32 | int8 (answers changed) | bf16 (answers changed) | auto serves |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        graphs = result.get("serving_graphs")
        if not graphs or result.get("lever") in HOLDOUT:  # measured on the run's own split, which a refit saw
            continue

        def cell(name, graphs=graphs):
            part = graphs.get(name)
            if not part:
                return "not measured"
            changed = f" ({part['changed_share']:.2%})" if "changed_share" in part else ""
            return f"{part['accuracy']:.4f}{changed}"

        cells = " | ".join(cell(name) for name in ("fp32", "int8", "bf16"))
        rows.append(f"| {result['set']} | {result['run']} | {cells} | {graphs['auto']} |")
    return "\n".join(rows) if len(rows) > 2 else ""


class Served:
    """A trained model folder's fp32 answers for the set's split files, each part computed once."""

    def __init__(self, folder: Path, paths: dict[str, Path]):
        from bertclf.inference.predictor import Predictor
        from bertclf.training.data import read_examples

        self.predictor = Predictor(folder, precision="fp32")
        self.parts = {part: read_examples(path) for part, path in paths.items()}
        self._probabilities: dict = {}

    def probabilities(self, part: str):
        if part not in self._probabilities:
            self._probabilities[part] = self.predictor.predict_proba(self.parts[part].texts)
        return self._probabilities[part]

    def truth(self, part: str):
        """Class indices, or (multi-label) a 0/1 row per text."""
        import numpy as np

        from bertclf.inference.multilabel import multi_hot
        from bertclf.training.data import split_labels

        classes, labels = self.predictor.classes, self.parts[part].labels
        if self.predictor.multi_label:
            return multi_hot([split_labels(label, "|") for label in labels], classes)
        index = {name: i for i, name in enumerate(classes)}
        return np.array([index[label] for label in labels])

    def held_out(self) -> dict:
        """Accuracy and macro-F1 (multi-label: subset accuracy, micro- and macro-F1) on the test file."""
        from bertclf.training.evaluate import compute_metrics, compute_multilabel_metrics

        rows, truth, classes = self.probabilities("test"), self.truth("test"), self.predictor.classes
        if self.predictor.multi_label:
            return compute_multilabel_metrics(truth, rows >= self.predictor.thresholds, classes)
        return compute_metrics(truth, rows.argmax(axis=1), classes)

    def abstaining(self) -> dict:
        """Per ABSTAIN_TARGETS: the threshold `--target_precision` would choose on the validation file,
        and the precision and coverage it realises on the test file."""
        from bertclf.inference.abstain import at_threshold, threshold_for_precision

        found = {}
        for target in ABSTAIN_TARGETS:
            threshold, reached = threshold_for_precision(
                self.probabilities("validation"), self.truth("validation"), target
            )
            test = at_threshold(self.probabilities("test"), self.truth("test"), threshold)
            found[str(target)] = {
                "threshold": threshold,
                "reached_on_validation": reached,
                "test_precision": test["accuracy_answered"],
                "test_coverage": test["coverage"],
            }
        return found


BLEND_WEIGHTS = [round(0.1 * i, 1) for i in range(10)]


def tfidf_blend(served: Served, paths: dict[str, Path]) -> dict:
    """The TF-IDF lever, measured on a trained model: p = (1 - w) * model + w * TF-IDF logistic
    regression, w chosen on the validation split (accuracy; ties: the smaller w), kept only if it
    beats w = 0 there; then scored on the test split."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline

    predictor, parts = served.predictor, served.parts
    y = {part: served.truth(part) for part in paths}
    tfidf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000, C=10.0)
    ).fit(parts["train"].texts, y["train"])

    def probabilities(part):
        text_model = np.zeros((len(y[part]), len(predictor.classes)))
        text_model[:, tfidf.classes_] = tfidf.predict_proba(parts[part].texts)
        return served.probabilities(part), text_model

    model_val, tfidf_val = probabilities("validation")
    accuracy = [accuracy_score(y["validation"], ((1 - w) * model_val + w * tfidf_val).argmax(1)) for w in BLEND_WEIGHTS]
    best = BLEND_WEIGHTS[int(np.argmax(accuracy))]
    weight = best if accuracy[BLEND_WEIGHTS.index(best)] > accuracy[0] else 0.0
    model_test, tfidf_test = probabilities("test")
    predicted = ((1 - weight) * model_test + weight * tfidf_test).argmax(1)
    return {
        "weight": weight,
        "validation_accuracy": {"model": accuracy[0], "blend": max(accuracy)},
        "accuracy": float(accuracy_score(y["test"], predicted)),
        "macro_f1": float(f1_score(y["test"], predicted, average="macro", zero_division=0)),
    }


def run_hf(paths: dict[str, Path], hf_python: str, checkpoint: Path, seed: str) -> dict:
    command = [hf_python, str(ROOT / "benchmarks" / "hf_finetune.py"), "--checkpoint", str(checkpoint)]
    command += ["--seed", seed]
    command += [f"--{part}={path}" for part, path in paths.items()]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def table(results: list[dict]) -> str:
    """Markdown rows; each set's TF-IDF baseline (which every bertclf run fits) once, first.
    Multi-label sets: accuracy is subset accuracy, and micro-F1 is added after macro-F1."""
    rows = [
        "| set | run | accuracy | macro-F1 | train time (s) |",
        "|---|---|---|---|---|",
    ]

    def f1(result, prefix=""):
        micro = result.get(f"{prefix}micro_f1")
        return f"{result[f'{prefix}macro_f1']:.3f}" + (f" (micro {micro:.3f})" if micro is not None else "")

    baselines = {}
    for result in results:
        # (a held-out run's baseline was fitted and scored on the run's own split, not the test file)
        if "tfidf_accuracy" in result and result["set"] not in baselines and result.get("lever") not in HOLDOUT:
            baselines[result["set"]] = result
            rows.append(
                f"| {result['set']} | TF-IDF + logistic regression | {result['tfidf_accuracy']:.3f} "
                f"| {f1(result, 'tfidf_')} | |"
            )
    for result in results:
        rows.append(
            f"| {result['set']} | {result['run']} | {result['accuracy']:.3f} | {f1(result)} | {result['seconds']:.0f} |"
        )
        blend = result.get("blend")
        if blend:
            rows.append(
                f"| {result['set']} | {result['run']} + TF-IDF blend (w {blend['weight']:.1f}, chosen on validation) "
                f"| {blend['accuracy']:.3f} | {blend['macro_f1']:.3f} | |"
            )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="data/real", help="where realsets.py wrote the sets")
    parser.add_argument("--sets", default="debian,fortunes,foldoc")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of: {', '.join(LEVERS)}")
    parser.add_argument("--seeds", help="comma-separated: each lever runs once per seed (default: make train's --seed)")
    parser.add_argument("--hf_python", help="interpreter with torch + transformers: also run the HF reference")
    parser.add_argument("--model_dir", default="models", help="models folder whose pretrained/ holds the checkpoint")
    parser.add_argument(
        "--results", default=None, help="JSON lines appended per run (default: results.jsonl in --data_dir)"
    )
    parser.add_argument(
        "--tables",
        metavar="RESULTS",
        help="print the tables of an earlier run's JSON lines (e.g. benchmarks/results/quality-10k.jsonl) and stop",
    )
    args = parser.parse_args(argv)
    if args.tables:
        print_tables(read_results(Path(args.tables)))
        return
    unknown = sorted(set(filter(None, args.levers.split(","))) - set(LEVERS))
    if unknown:
        parser.error(f"unknown lever {', '.join(unknown)}; choose from {', '.join(LEVERS)}")

    from bertclf.config import DEFAULT_MODEL, TrainConfig
    from bertclf.pretrained import resolve

    default_seed = str(TrainConfig.seed)
    seeds = [seed.strip() for seed in (args.seeds or default_seed).split(",") if seed.strip()]
    if not seeds or not all(seed.isdigit() for seed in seeds):
        parser.error(f"--seeds: comma-separated whole numbers, not {args.seeds!r}")

    checkpoint = resolve(DEFAULT_MODEL, args.model_dir)  # fetched once, before any timing
    cpu = machine()
    pretrained = Path(args.model_dir).resolve() / "pretrained"
    data_dir = Path(args.data_dir)
    results_file = Path(args.results) if args.results else data_dir / "results.jsonl"
    if not results_file.parent.is_dir():  # checked now: a run is minutes to hours of work
        parser.error(f"--results {results_file}: the folder {results_file.parent} does not exist")
    results = []
    for name in [s for s in args.sets.split(",") if s]:
        data = data_dir / f"{name}.csv"
        if not data.is_file():
            parser.error(f"{data} does not exist; build it first: python benchmarks/realsets.py --sets {name}")
        # A seed other than the default splits the set anew too: every lever of one seed sees the
        # same split (so their difference is paired), and the seeds' spread covers split and fit.
        split_paths = {
            seed: write_splits(
                data,
                data_dir / "splits" / (name if seed == default_seed else f"{name}-seed{seed}"),
                None if seed == default_seed else int(seed),
            )
            for seed in seeds
        }
        runs: list[tuple[str, str | None, list[str] | None, str]] = [  # (row name, lever, options, seed)
            (lever, lever, LEVERS[lever], seed)
            if seed == default_seed
            else (f"{lever} (seed {seed})", lever, [*LEVERS[lever], "--seed", seed], seed)
            for lever in args.levers.split(",")
            if lever
            for seed in seeds
        ]
        if args.hf_python:
            runs += [
                (REFERENCE if seed == default_seed else f"{REFERENCE} (seed {seed})", REFERENCE, None, seed)
                for seed in seeds
            ]
        for run, lever, options, seed in runs:
            paths = split_paths[seed]
            print(f"{name}: {run} ...", file=sys.stderr, flush=True)
            if options is None:
                assert args.hf_python
                result = run_hf(paths, args.hf_python, Path(checkpoint.path), seed)
            else:
                with tempfile.TemporaryDirectory(prefix="bertclf-quality-") as scratch:
                    (Path(scratch) / "pretrained").symlink_to(pretrained)
                    result = run_bertclf(paths, options, Path(scratch), holdout=lever in HOLDOUT)
            result.update(
                {
                    "set": name,
                    "run": run,
                    "lever": lever,
                    "seed": seed,
                    "options": options,
                    "machine": cpu,
                    "when": time.strftime("%Y-%m-%d %H:%M"),
                }
            )
            results.append(result)
            with open(results_file, "a", encoding="utf-8") as file:
                file.write(json.dumps(result) + "\n")
            print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print_tables(results)


def print_tables(results: list[dict]) -> None:
    """Every table of the runs' results: scores, the levers' options, seeds' spread and paired
    differences (when a lever ran with several seeds), abstain thresholds, serving precisions."""
    for part in (table(results), docs_tables(results), decisions(results)):
        if part:
            print(part + "\n")


SEEDS_NEEDED = 3  # the rule: a verdict on fewer seeds is a screen, not a decision


def paired(results: list[dict]) -> str:
    """Markdown rows: each lever against its baseline (the default; for a held-out lever,
    default_holdout: BASELINE) on the same set and seed (so on the same splits and the same
    initialisation but for the lever) and, where the baseline ran there, on the same machine (the
    fit's arithmetic differs between CPUs; the column says how many pairs are): the mean of the
    per-seed differences, their range, the baseline's own spread over its seeds, and a verdict. A
    lever wins (or loses) only when every seed agrees and the mean difference exceeds the baseline's
    spread; else it is noise; and only on SEEDS_NEEDED seeds of both (before that the verdict says
    how far it got). The TF-IDF blend each run measures on its own model is the lever
    "<lever> + blend", against that lever; the default is also paired against the Hugging Face
    reference (REFERENCE) where it ran: our margin over a plain fine-tune.

    Beside the verdict, for reading only (it decides nothing): the same test against the spread of
    the per-seed differences themselves instead of the baseline's. The baseline's spread holds how
    much the split alone moves every configuration, which a paired difference cancels; the
    differences' own spread is the noise left in the comparison."""
    runs: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for result in results:
        if result.get("lever") is not None and result.get("seed") is not None:
            seed, cpu = str(result["seed"]), result.get("machine", "unknown")
            runs.setdefault((result["set"], result["lever"]), {}).setdefault(seed, []).append(result)
            if result.get("blend"):
                blended = {"accuracy": result["blend"]["accuracy"], "macro_f1": result["blend"]["macro_f1"]}
                blended["machine"] = cpu
                runs.setdefault((result["set"], f"{result['lever']} + blend"), {}).setdefault(seed, []).append(blended)
    rows = [
        "| set | lever | against | seeds | accuracy: mean difference (range) | macro-F1: mean difference (range) "
        "| baseline's spread (acc / F1) | pairs on one machine | against the differences' own spread | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    pairs = []  # (set, lever, baseline); the reference is the default's baseline, not a lever
    for name, lever in runs:
        if lever == REFERENCE:
            pairs.append((name, "default", REFERENCE))
        elif lever.endswith(" + blend"):
            pairs.append((name, lever, lever.removesuffix(" + blend")))
        else:
            pairs.append((name, lever, BASELINE.get(lever, "default")))
    for name, lever, baseline in pairs:
        by_seed, base_runs = runs.get((name, lever)), runs.get((name, baseline))
        if lever == baseline or not by_seed or not base_runs:
            continue
        seeds = sorted(set(by_seed) & set(base_runs))
        if not seeds:
            continue
        ours = {seed: by_seed[seed][-1] for seed in by_seed}  # a seed run again: its latest run
        # Each seed's baseline run on the lever's machine if there is one (its latest), else its latest.
        cpus = {run.get("machine", "unknown") for run in ours.values()}
        base = {}
        for seed, candidates in base_runs.items():
            here = [run for run in candidates if run.get("machine", "unknown") in cpus]
            base[seed] = (here or candidates)[-1]
        same = sum(base[seed].get("machine", "unknown") == ours[seed].get("machine", "unknown") for seed in seeds)
        cells, verdicts, spreads, within = [], [], [], []
        for key in ("accuracy", "macro_f1"):
            differences = [ours[seed][key] - base[seed][key] for seed in seeds]
            mean = sum(differences) / len(differences)
            noise = max(run[key] for run in base.values()) - min(run[key] for run in base.values())
            spreads.append(noise)
            cells.append(f"{mean:+.4f} ({min(differences):+.4f} to {max(differences):+.4f})")
            agree = all(d > 0 for d in differences) or all(d < 0 for d in differences)
            verdicts.append(_reading(mean, agree, noise))
            within.append(_reading(mean, agree, max(differences) - min(differences)))
        verdict, paired_reading = _both(verdicts), _both(within)
        if min(len(seeds), len(base)) < SEEDS_NEEDED:  # one seed's baseline has no spread: any gain would "win"
            verdict = f"too few seeds ({min(len(seeds), len(base))} of {SEEDS_NEEDED}): {verdict} so far"
            paired_reading = "too few seeds"
        rows.append(
            f"| {name} | {lever} | {baseline} | {len(seeds)} | {cells[0]} | {cells[1]} "
            f"| {spreads[0]:.4f} / {spreads[1]:.4f} | {same} of {len(seeds)} | {paired_reading} | {verdict} |"
        )
    return "\n".join(rows) if len(rows) > 2 else ""


def _reading(mean: float, agree: bool, noise: float) -> str:
    """wins or loses when every seed's difference has the mean's sign and the mean exceeds `noise`."""
    return ("wins" if mean > 0 else "loses") if agree and abs(mean) > noise else "noise"


def _both(readings: list[str]) -> str:
    """One reading of accuracy and macro-F1: the shared word, or each one's."""
    return readings[0] if readings[0] == readings[1] else f"accuracy {readings[0]}, F1 {readings[1]}"


def read_results(path: Path) -> list[dict]:
    """The runs' JSON lines of a --results file (blank lines skipped)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def abstain_table(results: list[dict]) -> str:
    """Markdown rows: per set, lever and target precision, the threshold `--target_precision` chose on
    the validation file and the precision and coverage it realised on the test file (mean over seeds,
    and the lowest realised precision)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for result in results:
        for target, found in (result.get("abstain") or {}).items():
            if found["test_precision"] is not None:
                groups.setdefault((result["set"], result["run"].split(" (seed")[0], target), []).append(found)
    rows = [
        "| set | run | target precision | seeds | realised test precision: mean (lowest) | test coverage: mean |",
        "|---|---|---|---|---|---|",
    ]
    for (name, lever, target), group in groups.items():
        precision = [found["test_precision"] for found in group]
        coverage = [found["test_coverage"] for found in group]
        rows.append(
            f"| {name} | {lever} | {target} | {len(group)} | {sum(precision) / len(group):.3f} ({min(precision):.3f}) "
            f"| {sum(coverage) / len(group):.1%} |"
        )
    return "\n".join(rows) if len(rows) > 2 else ""


def spread(results: list[dict]) -> str:
    """Markdown rows: each set and lever's mean and spread (max - min) over its seeds, per machine,
    with its mean training time; first each set's TF-IDF reference over the seeds' splits (it is
    fitted on the run's own split, so once per seed whatever the lever or machine). Multi-label sets
    add micro-F1 to the macro-F1 cell."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    references: dict[str, dict[str, dict]] = {}
    for result in results:
        if result["lever"] is not None:  # the Hugging Face reference runs once
            key = (result["set"], result["lever"], result.get("machine", "unknown"))
            groups.setdefault(key, []).append(result)
            if "tfidf_accuracy" in result and result["lever"] not in HOLDOUT:
                references.setdefault(result["set"], {}).setdefault(str(result["seed"]), result)
    rows = [
        "| set | run | machine | seeds | accuracy mean (spread) | macro-F1 mean (spread) | train time (s) mean |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(values: list[float]) -> str:
        return f"{sum(values) / len(values):.3f} ({max(values) - min(values):.3f})"

    def scores(group: list[dict], prefix: str = "") -> list[str]:
        f1 = cell([result[f"{prefix}macro_f1"] for result in group])
        if all(result.get(f"{prefix}micro_f1") is not None for result in group):
            f1 += f", micro {cell([result[f'{prefix}micro_f1'] for result in group])}"
        return [cell([result[f"{prefix}accuracy"] for result in group]), f1]

    for name, by_seed in references.items():
        accuracy, f1 = scores(list(by_seed.values()), "tfidf_")
        rows.append(f"| {name} | TF-IDF + logistic regression | any | {len(by_seed)} | {accuracy} | {f1} | |")
    for (name, lever, cpu), group in groups.items():
        accuracy, f1 = scores(group)
        seconds = (
            sum(result["seconds"] for result in group) / len(group) if all("seconds" in r for r in group) else None
        )
        time_cell = f"{seconds:.0f}" if seconds is not None else ""
        rows.append(f"| {name} | {lever} | {cpu} | {len(group)} | {accuracy} | {f1} | {time_cell} |")
    return "\n".join(rows) if any(len(group) > 1 for group in groups.values()) else ""


def legend(results: list[dict]) -> str:
    """Markdown rows: the `train` options of each lever the results hold."""
    levers = dict.fromkeys(result["lever"] for result in results if result.get("lever") in LEVERS)
    rows = ["| lever | `python -m bertclf train` options added to the defaults |", "|---|---|"]
    for lever in levers:
        options = f"`{' '.join(LEVERS[lever])}`" if LEVERS[lever] else "none"
        if lever in HOLDOUT:
            options += "; held out: trained on the set's train + validation files, scored on its test file"
        rows.append(f"| {lever} | {options} |")
    if any(result.get("lever") == REFERENCE for result in results):
        rows.append(
            f"| {REFERENCE} | not bertclf: the plain Hugging Face + PyTorch fine-tune of the same checkpoint "
            "(`benchmarks/hf_finetune.py`: 3 epochs, lr 1e-4, batch 32, max length 128, no early stopping) |"
        )
    return "\n".join(rows)


def docs_tables(results: list[dict]) -> str:
    """The tables docs/benchmarks.md shows (docs/hooks.py renders them from the results file at
    every build): levers, seeds' spread, paired differences with verdicts, abstain thresholds."""
    return "\n\n".join(
        part for part in (legend(results), spread(results), paired(results), abstain_table(results)) if part
    )


if __name__ == "__main__":
    main()
