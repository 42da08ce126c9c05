"""The wall time of the whole `make train` (defaults), this tree against an earlier commit, in one run.

    python benchmarks/train_end_to_end.py [--before REF] [--data data/sample.csv,data/real4k/debian.csv]

Each data file is trained twice with `python -m bertclf train --data FILE` and nothing else: once
with the code of commit REF (checked out into a temporary git worktree, run with this virtualenv)
and once with this tree, one after the other on the same cores. A file that is not there is
skipped with the command that makes it (the 4,000-text real set: `python benchmarks/realsets.py
--sets debian --size 4000 --out data/real4k`). For this tree's runs the table adds the share of
the run that was not the fit, from the stage record in the model folder's metrics.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bertclf.registry import latest_model_folder

ROOT = Path(__file__).resolve().parent.parent
# The last commit before issue 22 (fused optimizer, precision auto, stage table).
BEFORE = "0ead7d7"
REAL_SET = "data/real4k/debian.csv"


def run_train(src: Path, data: str, models: Path) -> tuple[float, dict]:
    """Wall seconds of one default training run with the package at `src`, and its metrics.json."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "train", "--data", data, "--models_dir", str(models)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"training {data} with {src} failed:\n{result.stderr[-3000:]}")
    folder = latest_model_folder(models)
    return seconds, json.loads((folder / "metrics.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help=f"the commit to compare with (default {BEFORE})")
    parser.add_argument("--data", default=f"data/sample.csv,{REAL_SET}", help="comma-separated CSV files")
    args = parser.parse_args()

    files = []
    for data in args.data.split(","):
        if (ROOT / data).is_file():
            files.append(data)
        elif data == REAL_SET:
            print(
                f"{data}: not there; make it with "
                "python benchmarks/realsets.py --sets debian --size 4000 --out data/real4k"
            )
        else:
            sys.exit(f"{data}: no such file")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bertclf-e2e-") as tmp:
        before = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True, capture_output=True
        )
        try:
            for data in files:
                for name, src in ((f"before ({args.before})", before / "src"), ("this tree", ROOT / "src")):
                    models = Path(tmp) / f"models-{len(rows)}"
                    seconds, metrics = run_train(src, data, models)
                    timing = metrics.get("time")
                    rows.append((data, name, seconds, metrics["accuracy"], timing["other_share"] if timing else None))
                    print(f"{data}, {name}: {seconds:.0f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)

    print(f"\n{'data':<28}{'code':<22}{'wall s':>8}{'accuracy':>10}{'not the fit':>13}")
    for data, name, seconds, accuracy, other in rows:
        share = f"{100 * other:.1f}%" if other is not None else ""
        print(f"{data:<28}{name:<22}{seconds:>8.0f}{accuracy:>10.3f}{share:>13}")
    for data in files:
        old, new = (row[2] for row in rows if row[0] == data)
        print(f"{data}: this tree's run takes {new / old:.2f}x the time of the one before")


if __name__ == "__main__":
    main()
