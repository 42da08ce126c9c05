"""Labelling a file: rows/s and peak memory from a thousand to a million rows.

    python benchmarks/label_file.py [--models_dir D --model_dir F] [--rows 1000 100000 1000000] [--max_seq_len 32]

Each size is a CSV of short texts (4-12 of the sample data's words, seeded) with an id column,
labelled by `python -m bertclf predict --input ... --output ...` in its own process, exactly as a
user runs it. Peak memory is the process's high-water mark (VmHWM), read from /proc while it runs.
Streaming means the peak must not grow with the rows: the last column says how it compares with
the smallest file's. A short --max_seq_len keeps a million rows to minutes on 2 cores; rows/s at a
model's own length is what `make bench-serve` reports beside the server's texts/s.

With --engines (needs `make install-engines`), the same --engine_rows file (100,000 rows) is also
labelled, in one run, by `predict --input` (every core), `predict --engine ray` with 1 and 2
workers of one CPU each, and the Spark UDF on local[1] and local[2]. Each scorer writes a line per
model load and per batch (BERTCLF_SCORER_LOG), so the table shows how many times the model loaded
(once per worker: never per batch), each engine's labelling rate (rows over the span from the first
batch's start to the last one's end, start-up excluded) beside its wall time, and each worker's peak
memory (VmHWM of the processes that loaded a model). On 2 cores, 2 workers should come within 10% of
twice one worker's single-thread rate.
"""

import argparse
import csv
import json
import os
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


SPARK_DRIVER = """
import sys
from pyspark.sql import SparkSession
from bertclf.spark import udf
source, target, cores, model, max_seq_len = sys.argv[1:]
spark = (SparkSession.builder.master(f"local[{cores}]").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", cores).getOrCreate())
frame = spark.read.csv(source, header=True, multiLine=True, escape='"').repartition(int(cores) * 4)
label = udf(model, max_seq_len=int(max_seq_len), batch_size=2048)
frame.withColumn("answer", label("text")).select("*", "answer.*").drop("answer").write.csv(target, header=True)
spark.stop()
"""


def watched(command: list[str], trace: Path, env: dict | None = None) -> tuple[float, dict[int, int]]:
    """(seconds, {pid: peak kB}) of a command, peaks for every process its scorers' trace names."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peaks: dict[int, int] = {}
    while process.poll() is None:
        for pid in {entry["pid"] for entry in read_trace(trace)}:
            peaks[pid] = max(peaks.get(pid, 0), peak_kb(pid) or 0)
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{process.stderr.read() if process.stderr else ''}")
    return seconds, peaks


def read_trace(trace: Path) -> list[dict]:
    if not trace.exists():
        return []
    return [json.loads(line) for line in trace.read_text().splitlines() if line.endswith("}")]


def engine_rows(source: Path, folder: Path, model: Path, models_dir: str, max_seq_len: int) -> list[dict]:
    """One row per engine run on `source`: rows/s (labelling and wall), loads, batches, peak MB per worker."""
    with open(source, encoding="utf-8") as f:
        n = sum(1 for _ in f) - 1  # one line per row: the texts are words
    common = ["--models_dir", models_dir, "--model_dir", str(model), "--max_seq_len", str(max_seq_len)]
    runs: list[tuple[str, int | None, list[str]]] = [("predict --input", None, [])]  # label() runs it
    for workers in (1, 2):
        command = [sys.executable, "-m", "bertclf", "predict", "--engine", "ray", "--workers", str(workers), *common]
        runs.append((f"Ray, {workers} worker{'s' * (workers > 1)}", workers, command))
    for cores in (1, 2):
        runs.append((f"Spark local[{cores}]", cores, [sys.executable, "-c", SPARK_DRIVER]))
    rows = []
    for name, workers, command in runs:
        trace, target = folder / f"trace-{len(rows)}.jsonl", folder / f"out-{len(rows)}"
        env = {**os.environ, "BERTCLF_SCORER_LOG": str(trace), "PYSPARK_PYTHON": sys.executable}
        if name.startswith("Spark"):
            command = [*command, str(source), str(target), str(workers), str(model), str(max_seq_len)]
        else:
            command = [*command, "--input", str(source), "--output", str(target) + ("" if workers else ".csv")]
        if name == "predict --input":  # no scorer here: the process itself is the one worker
            seconds, peak = label(source, Path(str(target) + ".csv"), common)
            rows.append({"engine": name, "workers": 1, "threads": os.cpu_count(), "seconds": seconds,
                         "rows_per_s": n / seconds, "labelling_rows_per_s": n / seconds, "loads": 1,
                         "batches": None, "peak_mb": peak / 1024})  # fmt: skip
        else:
            seconds, peaks = watched(command, trace, env)
            entries = read_trace(trace)
            batches = [e for e in entries if e["event"] == "batch"]
            loads = [e for e in entries if e["event"] == "load"]
            assert sum(b["rows"] for b in batches) == n, f"{name}: {sum(b['rows'] for b in batches)} rows of {n}"
            span = max(b["end"] for b in batches) - min(b["start"] for b in batches)
            rows.append({"engine": name, "workers": workers, "threads": 1, "seconds": seconds,
                         "rows_per_s": n / seconds, "labelling_rows_per_s": n / span, "loads": len(loads),
                         "load_pids": len({e["pid"] for e in loads}), "batches": len(batches),
                         "peak_mb": max(peaks.values(), default=0) / 1024})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def print_engines(rows: list[dict], n: int) -> None:
    print(f"\n{n:,} rows, one file, one run:\n")
    print(
        "| engine | workers x threads | wall s | rows/s (wall) | rows/s (labelling) | model loads / batches "
        "| peak MB per worker |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        batches = "-" if r["batches"] is None else f"{r['loads']} / {r['batches']}"
        print(f"| {r['engine']} | {r['workers']} x {r['threads']} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | "
              f"{r['labelling_rows_per_s']:,.0f} | {batches} | {r['peak_mb']:,.0f} |")  # fmt: skip
    for family in ("Ray", "Spark"):
        one = next(r for r in rows if r["engine"].startswith(family) and r["workers"] == 1)
        two = next(r for r in rows if r["engine"].startswith(family) and r["workers"] == 2)
        ratio = two["labelling_rows_per_s"] / one["labelling_rows_per_s"]
        verdict = "within 10% of 2x" if ratio >= 1.8 else "short of 1.8x"
        print(f"{family}: 2 workers label at {ratio:.2f}x one worker's rate ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", help="model folder (default: the latest)")
    parser.add_argument("--models_dir", default="models", help="the models folder it lies in")
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--max_seq_len", type=int, default=32)
    parser.add_argument("--source", default=str(ROOT / "data" / "sample.csv"), help="where the words come from")
    parser.add_argument("--engines", action="store_true", help="also Ray and Spark on --engine_rows rows")
    parser.add_argument("--engine_rows", type=int, default=100_000)
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
        if args.engines:
            from bertclf.registry import chosen_model_folder

            model = chosen_model_folder(args.models_dir, args.model_dir)
            source = Path(folder) / f"rows-{args.engine_rows}.csv"
            write_rows(source, args.engine_rows, vocabulary)
            engines = engine_rows(source, Path(folder), model, args.models_dir, args.max_seq_len)
    first = results[0][2]
    print(f"\n{'rows':>10} {'file MB':>8} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} {'vs first':>8}")
    for n, seconds, peak, size in results:
        rate, ratio = n / seconds, peak / first
        print(f"{n:>10,} {size / 1e6:>8.1f} {seconds:>8.1f} {rate:>8.0f} {peak / 1024:>8.0f} {ratio:>7.2f}x")

    if args.engines:
        print_engines(engines, args.engine_rows)


if __name__ == "__main__":
    main()
