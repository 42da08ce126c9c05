"""Labelling a file: rows/s and peak memory from a thousand to a million rows.

    python benchmarks/label_file.py [--models_dir D --model_dir F] [--rows 1000 100000 1000000] [--max_seq_len 32]

Each size is a CSV of short texts (4-12 of the sample data's words, seeded) with an id column,
labelled by `python -m bertclf predict --input ... --output ...` in its own process, exactly as a
user runs it. Peak memory is the process's high-water mark (VmHWM), read from /proc while it runs.
Streaming means the peak must not grow with the rows: the last column says how it compares with
the smallest file's. A short --max_seq_len keeps a million rows to minutes on 2 cores; rows/s at a
model's own length is what `make bench-serve` reports beside the server's texts/s.
"""

import argparse
import csv
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def words(source: Path) -> list[str]:
    with open(source, newline="", encoding="utf-8") as f:
        return sorted({word for row in csv.DictReader(f) for word in row["text"].split()})


def write_rows(path: Path, n: int, vocabulary: list[str], seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(n):
            writer.writerow([i, " ".join(rng.choices(vocabulary, k=rng.randint(4, 12)))])


def peak_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def label(source: Path, target: Path, options: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in kB) of one `predict --input` run."""
    command = [sys.executable, "-m", "bertclf", "predict", "--input", str(source), "--output", str(target), *options]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, peak_kb(process.pid) or 0)
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"labelling {source} failed:\n{process.stderr.read() if process.stderr else ''}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", help="model folder (default: the latest)")
    parser.add_argument("--models_dir", default="models", help="the models folder it lies in")
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--max_seq_len", type=int, default=32)
    parser.add_argument("--source", default=str(ROOT / "data" / "sample.csv"), help="where the words come from")
    args = parser.parse_args()
    options = ["--max_seq_len", str(args.max_seq_len), "--models_dir", args.models_dir]
    options += ["--model_dir", args.model_dir] if args.model_dir else []
    vocabulary = words(Path(args.source))
    results = []
    with tempfile.TemporaryDirectory(prefix="bertclf-label-bench-") as folder:
        for n in sorted(args.rows):
            source, target = Path(folder) / f"rows-{n}.csv", Path(folder) / f"labelled-{n}.csv"
            write_rows(source, n, vocabulary)
            seconds, peak = label(source, target, options)
            with open(target, newline="", encoding="utf-8") as f:
                written = sum(1 for _ in csv.reader(f)) - 1
            assert written == n, f"{written} rows written of {n}"
            results.append((n, seconds, peak, source.stat().st_size))
            print(f"{n:>10,} rows: {seconds:8.1f} s, {n / seconds:7.0f} rows/s, peak {peak / 1024:7.0f} MB", flush=True)
            source.unlink()
            target.unlink()
    first = results[0][2]
    print(f"\n{'rows':>10} {'file MB':>8} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} {'vs first':>8}")
    for n, seconds, peak, size in results:
        rate, ratio = n / seconds, peak / first
        print(f"{n:>10,} {size / 1e6:>8.1f} {seconds:>8.1f} {rate:>8.0f} {peak / 1024:>8.0f} {ratio:>7.2f}x")


if __name__ == "__main__":
    main()
