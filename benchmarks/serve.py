"""Serving speed: this server over HTTP vs the naive way, on one fixed, seeded workload.

    python benchmarks/serve.py [--model_dir models/trained/<folder>] [--max_seq_len 128 512]

Workload: 1,024 texts built from the sample data's words with the skew of real questions and
tickets (median 40 tokens, 20% over 128, 5-6% over 256), the same every run (seed 0).

Measured in one run, per max_seq_len, each path alone on the machine:
- throughput (texts/s): the whole workload in requests of 32 texts, one after another;
- single-text latency p50/p99 over 200 one-text requests;
- throughput under 8 concurrent clients (16 texts a request), and errors.
Paths:
- "server" / "server-int8" / "server-auto": `python -m bertclf serve` (real gunicorn, 1 worker,
  ONNX Runtime in fp32 / int8 / the default, --precision auto, which serves the int8 graph where
  the export measured that it keeps the model's accuracy), every request a real HTTP POST /predict
  from this process;
- "in-process": the ceiling: the same fp32 graph and tokenizer through `Predictor` in this process,
  no HTTP, all texts of the workload sorted by length at once (so its batches pad least); its
  "8 clients" column is that same whole-workload rate, and its latency a `predict` of one text.
  Its rate and the fp32 and auto servers' 8-client rates are medians of 3 rounds measured in
  alternation, so the noise of a shared machine falls on all;
- embeddings: the in-process rate with the probabilities alone and with the embeddings too
  (`Predictor.compute(embed=True)`, what POST /embed runs), alternating 3 rounds;
- "predict --input": `label_file`, what `python -m bertclf predict --input F --output F` runs, on a
  CSV of the workload's texts with the in-process predictor, in the same alternating rounds; it
  must not be slower than the server;
- "naive": the seed's way, in-process (no HTTP, which only flatters it): KerasHub's predict with
  every text padded to max_seq_len, one call per request, requests one at a time (as a
  single-threaded Flask app serves them). It is slow: it runs on the first --naive_texts texts.
Then the ratios (server / in-process is what HTTP, gunicorn, Flask and the batcher cost; each
server against the fp32 ceiling with the issue-25 targets), the test-split accuracy of fp32 vs int8
when the model's training data is at hand, and peak memory (max RSS) of the servers and of this
process. First, the CPU and which of the instruction sets ONNX Runtime's kernels use it has.
"""

import argparse
import csv
import http.client
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bertclf.training.startup import import_tensorflow

import_tensorflow()  # first: keeps TensorFlow's start-up chatter out of the report

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402

from bertclf.cpu import cpu_flags  # noqa: E402
from bertclf.inference.labelfile import label_file  # noqa: E402
from bertclf.inference.predictor import Predictor  # noqa: E402
from bertclf.registry import latest_model_folder  # noqa: E402
from bertclf.training.data import read_examples  # noqa: E402
from bertclf.training.evaluate import evaluate_saved_model  # noqa: E402
from bertclf.training.pipeline import encode  # noqa: E402

# Instruction sets ONNX Runtime's CPU kernels pick at run time: fp32 products on AVX2/AVX-512, int8
# products on AVX2, AVX-VNNI / AVX512-VNNI and AMX tiles.
CPU_FEATURES = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "amx_int8", "amx_bf16")


def cpu_features(path="/proc/cpuinfo"):
    """(the CPU's model name, {feature: present}) from /proc/cpuinfo."""
    try:
        text = Path(path).read_text()
    except OSError:
        return "unknown (no /proc/cpuinfo)", {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return model, {feature: feature in cpu_flags() for feature in CPU_FEATURES}


# Tokens per word of the sample data's words under the default model's WordPiece (measured).
TOKENS_PER_WORD = 1.25


def workload(n=1024, seed=0, source="data/sample.csv"):
    """n texts of the sample data's words with the issue's skew: median about 40 tokens, about 20%
    over 128 and 5% over 256. A single log-normal cannot have all three, so: 80% short texts
    (log-normal, median 33 tokens, capped at 128) and 20% long ones (log-uniform, 129-321 tokens)."""
    rng = np.random.default_rng(seed)
    words = " ".join(read_examples(source).texts).split()
    long = rng.random(n) < 0.2
    tokens = np.where(
        long, np.exp(rng.uniform(np.log(129), np.log(321), n)), np.minimum(rng.lognormal(np.log(33), 0.6, n), 128)
    )
    counts = np.maximum(1, np.round((tokens - 2) / TOKENS_PER_WORD)).astype(int)  # [CLS] and [SEP] are 2
    return [" ".join(rng.choice(words, size=k)) for k in counts]


class Naive:
    """The seed's way: KerasHub predict, every text padded to max_seq_len, one call per request."""

    def __init__(self, folder, max_seq_len):
        self.model = keras_hub.models.TextClassifier.from_preset(str(folder))
        self.model.preprocessor.sequence_length = max_seq_len
        self.lock = threading.Lock()  # one request at a time, as the seed's Flask dev server

    def __call__(self, texts):
        with self.lock:
            self.model.predict(np.array(texts), verbose=0)


class Server:
    """`python -m bertclf serve` on a free port; calling it posts texts to /predict."""

    def __init__(self, folder, max_seq_len, precision):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        models_dir = Path(folder).resolve().parent.parent
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bertclf",
                "serve",
                "--port",
                str(self.port),
                "--models_dir",
                str(models_dir),
                "--model_dir",
                str(Path(folder).resolve()),
                "--max_seq_len",
                str(max_seq_len),
                "--precision",
                precision,
                "--workers",
                "1",
                "--threads",
                "16",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # never a pipe nobody reads
        self.local = threading.local()
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/ready", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or listening while the worker still loads its model
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            time.sleep(0.5)
        raise RuntimeError("the server was not ready within 600 s")

    def __call__(self, texts):
        """POST /predict from a keep-alive connection per client thread. The standard library's
        http.client, not requests: requests spends ~2.5 ms of its own on each call here (single
        text p50 12.6 ms with it, 10.1 ms with http.client, same server), which is the client's
        cost, not the server's."""
        body = json.dumps({"x": texts})
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            try:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                connection.close()  # the server closed an idle keep-alive connection: open another
                self.local.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"/predict answered {response.status}: {answer[:200]!r}")
            return json.loads(answer)

    def peak_memory_mb(self):
        """Max RSS of the server's processes (gunicorn master + worker), from /proc."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
            except FileNotFoundError:
                pass
        return total

    def stop(self):
        self.process.terminate()
        self.process.wait(60)


def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def throughput(run, texts, request_size=32):
    start = time.perf_counter()
    for i in range(0, len(texts), request_size):
        run(texts[i : i + request_size])
    return len(texts) / (time.perf_counter() - start)


def latency(run, texts, n=200):
    times = []
    for text in texts[:n]:
        start = time.perf_counter()
        run([text])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def concurrent(run, texts, clients=8, request_size=16):
    """Texts/s when `clients` threads send requests at once; errors counted."""
    chunks = [texts[i : i + request_size] for i in range(0, len(texts), request_size)]
    errors = []

    def client(mine):
        for chunk in mine:
            try:
                run(chunk)
            except Exception as err:
                errors.append(err)

    threads = [threading.Thread(target=client, args=(chunks[k::clients],)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(texts) / (time.perf_counter() - start), len(errors)


def in_process_rate(predictor, texts):
    """Texts/s of one call on every text (sorted by length inside it)."""
    start = time.perf_counter()
    predictor.predict_proba(texts)
    return len(texts) / (time.perf_counter() - start)


def label_file_rate(predictor, texts):
    """Rows/s of labelling a CSV of the texts (`predict --input`: read, classify in chunks, write)."""
    with tempfile.TemporaryDirectory(prefix="bertclf-bench-") as folder:
        source = Path(folder) / "texts.csv"
        with open(source, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows(enumerate(texts))
        return label_file(predictor, source, Path(folder) / "labelled.csv", progress=False)["rows_per_second"]


def embedding_cost(predictor, texts, rounds=3):
    """Medians of texts/s with the probabilities alone and with the embeddings too (one pass gives
    both), measured in alternation."""
    alone, both = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        predictor.predict_proba(texts)
        alone.append(len(texts) / (time.perf_counter() - start))
        start = time.perf_counter()
        predictor.compute(texts, embed=True)
        both.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(alone), statistics.median(both)


def side_by_side(predictor, server, texts, rounds=3):
    """Medians of the in-process rate, the server's 8-client rate and the file labeller's rows/s,
    measured in alternation so that the noise of a shared machine falls on all alike."""
    ours, top, rows = [], [], []
    for _ in range(rounds):
        top.append(in_process_rate(predictor, texts))
        ours.append(concurrent(server, texts)[0])
        rows.append(label_file_rate(predictor, texts))
    return statistics.median(ours), statistics.median(top), statistics.median(rows)


def ceiling(predictor, texts, latency_texts):
    """The in-process row: every text in one call (sorted by length inside), single texts for latency."""
    predictor.predict_proba(texts[:64])  # warm up
    rate = in_process_rate(predictor, texts)
    p50, p99 = latency(lambda batch: predictor.predict_proba(batch), texts, n=latency_texts)
    print(
        f"  {'in-process':<11} {rate:7.1f} texts/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
        f"(all texts sorted at once, no HTTP)",
        flush=True,
    )
    return dict(rate=rate, p50=p50, p99=p99, together=rate, errors=0)


def measure(name, run, texts, latency_texts):
    run(texts[:64])  # warm up: connections, allocations
    rate = throughput(run, texts)
    p50, p99 = latency(run, texts, n=latency_texts)
    together, errors = concurrent(run, texts)
    print(
        f"  {name:<11} {rate:7.1f} texts/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
        f"8 clients {together:7.1f} texts/s  errors {errors}",
        flush=True,
    )
    return dict(rate=rate, p50=p50, p99=p99, together=together, errors=errors)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", help="model folder (default: the latest)")
    parser.add_argument("--max_seq_len", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument(
        "--naive_texts",
        type=int,
        default=128,
        help="the naive path runs on the first N texts only (it is slow; rates are per text)",
    )
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8", "auto"], choices=["fp32", "int8", "auto"])
    args = parser.parse_args()
    folder = Path(args.model_dir or latest_model_folder("models"))
    texts = workload(args.texts)
    print(f"model: {folder}")
    model, features = cpu_features()
    amx = features.get("amx_int8", False)
    has = ", ".join(f"{feature} {'yes' if present else 'no'}" for feature, present in features.items())
    print(f"cpu: {model}; {has}")
    auto = Predictor(folder)
    print(f"precision auto serves {auto.precision}: {auto.precision_reason}")
    del auto

    lengths = encode(Predictor(folder, engine="tensorflow", max_seq_len=512).preprocessor, texts).lengths
    print(
        f"workload: {len(texts)} texts, median {int(np.median(lengths))} tokens, {np.mean(lengths > 128):.0%} "
        f"over 128, {np.mean(lengths > 256):.0%} over 256 (counted at 512)",
        flush=True,
    )

    rows, memory, files, embeds, ceilings = {}, {}, {}, {}, {}
    for max_seq_len in args.max_seq_len:
        print(f"max_seq_len {max_seq_len}:", flush=True)
        predictor = Predictor(folder, batch_size=32, max_seq_len=max_seq_len, precision="fp32")
        rows[max_seq_len, "in-process"] = ceiling(predictor, texts, 200)
        if predictor.embedding_dim is not None:
            alone, both = embedding_cost(predictor, texts)
            embeds[max_seq_len] = (alone, both)
            print(f"  embeddings: {alone:.1f} texts/s predicting, {both:.1f} with the embeddings too", flush=True)
        for precision in args.precisions:
            name = "server" if precision == "fp32" else f"server-{precision}"
            server = Server(folder, max_seq_len, precision)
            try:
                rows[max_seq_len, name] = measure(name, server, texts, 200)
                if precision in ("fp32", "auto"):
                    ours, top, labelled = side_by_side(predictor, server, texts)
                    rows[max_seq_len, name]["together"] = ours
                    if precision == "fp32":
                        rows[max_seq_len, "in-process"]["rate"] = rows[max_seq_len, "in-process"]["together"] = top
                        files[max_seq_len] = (labelled, ours)
                    else:
                        ceilings[max_seq_len] = top
                    print(
                        f"  alternating 3 rounds: in-process {top:.1f} texts/s, {name} with 8 clients {ours:.1f} "
                        f"texts/s (medians; these replace the rows' values), predict --input {labelled:.1f} rows/s",
                        flush=True,
                    )
                memory[name] = max(memory.get(name, 0), server.peak_memory_mb())
            finally:
                server.stop()
        del predictor
        naive = Naive(folder, max_seq_len)
        sample = texts[: args.naive_texts]
        rows[max_seq_len, "naive"] = measure("naive", naive, sample, min(50, len(sample)))
        del naive

    print(
        f"\n{'max_seq_len':>11} {'path':<11} {'texts/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'8 clients':>10} {'errors':>6}"
    )
    for (max_seq_len, name), r in rows.items():
        print(
            f"{max_seq_len:>11} {name:<11} {r['rate']:>8.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
            f"{r['together']:>10.1f} {r['errors']:>6}"
        )
    for (max_seq_len, name), r in rows.items():
        if name == "server":
            top = rows[max_seq_len, "in-process"]
            print(
                f"max_seq_len {max_seq_len}: server / in-process: throughput {r['rate'] / top['rate']:.2f}x, "
                f"8 clients {r['together'] / top['rate']:.2f}x (target >= 0.95x), single-text p50 "
                f"{r['p50'] / top['p50']:.2f}x (target <= 1.5x)"
            )
    goal = 1.8 if amx else 1.5
    for (max_seq_len, name), r in rows.items():
        if name.startswith("server"):
            # the auto server against the ceiling measured in its own alternation; the others against the fp32 one
            top = (ceilings.get(max_seq_len) if name == "server-auto" else None) or rows[max_seq_len, "in-process"][
                "rate"
            ]
            print(
                f"max_seq_len {max_seq_len}: {name} / fp32 in-process ceiling: 8 clients {r['together'] / top:.2f}x, "
                f"single client {r['rate'] / top:.2f}x"
                + (
                    f" (targets >= {goal}x and >= 1.2x {'with AMX' if amx else 'without AMX'})"
                    if name == "server-auto"
                    else ""
                )
            )
    for max_seq_len, (alone, both) in embeds.items():
        print(
            f"max_seq_len {max_seq_len}: asking for embeddings too costs {alone / both:.2f}x the time of the "
            "probabilities alone (one pass gives both; target about 1x)"
        )
    for max_seq_len, (labelled, served) in files.items():
        print(
            f"max_seq_len {max_seq_len}: predict --input (a CSV of the same texts) {labelled:.1f} rows/s = "
            f"{labelled / served:.2f}x the server's 8-client texts/s (target >= 1x)"
        )
    for (max_seq_len, name), r in rows.items():
        if name not in ("naive", "in-process"):
            naive = rows[max_seq_len, "naive"]
            print(
                f"max_seq_len {max_seq_len}: {name} / naive: throughput {r['rate'] / naive['rate']:.1f}x, "
                f"8 clients {r['together'] / naive['together']:.1f}x"
            )
    try:
        scores = {p: evaluate_saved_model(Predictor(folder, precision=p)) for p in args.precisions if p != "auto"}
        print(
            "test split: "
            + ", ".join(f"{p} accuracy {s['accuracy']:.4f} macro-F1 {s['macro_f1']:.4f}" for p, s in scores.items())
        )
    except (OSError, ValueError) as err:
        print(f"test split accuracy not measured: {err}")
    for name, mb in memory.items():
        print(f"peak memory, {name} (gunicorn master + worker): {mb:.0f} MB")
    print(
        f"peak memory, this process (naive model, TensorFlow): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    print(json.dumps({f"{k[0]} {k[1]}": v for k, v in rows.items()}))


if __name__ == "__main__":
    main()
