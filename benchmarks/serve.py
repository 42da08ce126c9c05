"""Serving speed: this server's inference path vs the naive way, on one fixed, seeded workload.

    python benchmarks/serve.py [--model_dir models/trained/<folder>] [--max_seq_len 128 512]

Workload: 1,024 texts built from the sample data's words with a realistic skew (median about 40
tokens, about 20% over 128, about 5% over 256), the same every run (seed 0).

Measured in one run, per max_seq_len:
- throughput (texts/s): the whole workload in requests of 32 texts;
- single-text latency p50/p99 over 200 one-text requests;
- throughput under 8 concurrent clients (threads, 16 texts each request) through the server's
  batcher, as the HTTP workers use it;
(the naive path on the first --naive_texts texts: it is slow, and rates are per text)
for "server" (Predictor: tokenize once, length-sorted batches padded per batch, one traced graph)
and "naive" (KerasHub's predict with every text padded to max_seq_len, one call per request, as
the seed project served). Peak memory (max RSS) is printed at the end.
"""

import argparse
import os
import resource
import statistics
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from bertclf.batches import encode  # noqa: E402
from bertclf.data import read_examples  # noqa: E402
from bertclf.predictor import Predictor  # noqa: E402
from bertclf.registry import latest_model_folder  # noqa: E402
from bertclf.serve.batcher import Batcher  # noqa: E402


def workload(n=1024, seed=0, source="data/sample.csv"):
    """n texts whose word counts follow a log-normal (median ~30 words, long right tail)."""
    rng = np.random.default_rng(seed)
    words = " ".join(read_examples(source).texts).split()
    lengths = np.maximum(1, rng.lognormal(mean=np.log(30), sigma=1.2, size=n)).astype(int)
    return [" ".join(rng.choice(words, size=min(k, 2000))) for k in lengths]


class Naive:
    """The seed's way: KerasHub predict, every text padded to max_seq_len, one call per request."""

    def __init__(self, folder, max_seq_len):
        self.model = keras_hub.models.TextClassifier.from_preset(str(folder))
        self.model.preprocessor.sequence_length = max_seq_len

    def predict_proba(self, texts):
        return self.model.predict(np.array(texts), verbose=0)


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


def concurrent(predictor, texts, clients=8, request_size=16, shared_batches=True):
    """Texts/s when `clients` threads send requests at once; errors counted. With shared_batches
    the requests go through one Batcher, as in the server; without, each request runs alone
    (one at a time, as a single-threaded Flask app serves them)."""
    batcher = Batcher(lambda: predictor, max_texts=256, max_queue=clients * 4) if shared_batches else None
    lock = threading.Lock()
    chunks = [texts[i : i + request_size] for i in range(0, len(texts), request_size)]
    errors = []

    def client(mine):
        for chunk in mine:
            try:
                if batcher is not None:
                    batcher.submit(chunk).result(timeout=300)
                else:
                    with lock:
                        predictor.predict_proba(chunk)
            except Exception as err:  # noqa: BLE001 - counted and reported
                errors.append(err)

    threads = [threading.Thread(target=client, args=(chunks[k::clients],)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(texts) / (time.perf_counter() - start), len(errors)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", help="model folder (default: the latest)")
    parser.add_argument("--max_seq_len", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--naive_texts", type=int, default=256,
                        help="the naive path runs on the first N texts only (it is slow; rates are per text)")
    args = parser.parse_args()
    folder = args.model_dir or latest_model_folder("models")
    texts = workload(args.texts)

    rows = []
    for max_seq_len in args.max_seq_len:
        server = Predictor(folder)
        server.preprocessor.sequence_length = max_seq_len
        lengths = encode(server.preprocessor, texts).lengths
        print(f"max_seq_len {max_seq_len}: median {int(np.median(lengths))} tokens, "
              f"{np.mean(lengths >= 128):.0%} at 128 or more, {np.mean(lengths >= 256):.0%} at 256 or more")
        naive = Naive(folder, max_seq_len)
        for name, model, sample in (("server", server, texts), ("naive", naive, texts[: args.naive_texts])):
            model.predict_proba(texts[:64])  # warm up: trace, allocate
            rate = throughput(model.predict_proba, sample)
            p50, p99 = latency(model.predict_proba, sample, n=min(200, len(sample)))
            together, errors = concurrent(model, sample, shared_batches=name == "server")
            rows.append((max_seq_len, name, rate, p50, p99, together, errors))
            print(f"  {name:<7} {rate:7.1f} texts/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                  f"8 clients {together:7.1f} texts/s  errors {errors}", flush=True)

    print(f"\n{'max_seq_len':>11} {'path':<7} {'texts/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'8 clients':>10} {'errors':>6}")
    for row in rows:
        print(f"{row[0]:>11} {row[1]:<7} {row[2]:>8.1f} {row[3]:>7.1f} {row[4]:>7.1f} {row[5]:>10.1f} {row[6]:>6}")
    for max_seq_len in args.max_seq_len:
        by = {row[1]: row for row in rows if row[0] == max_seq_len}
        print(f"max_seq_len {max_seq_len}: server / naive throughput {by['server'][2] / by['naive'][2]:.1f}x")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
