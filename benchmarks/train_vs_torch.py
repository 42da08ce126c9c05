"""Per-step training speed: bertclf's fit (Keras 3 on TensorFlow) against a plain PyTorch + Hugging
Face loop on the same padded batches of the same checkpoint, and where our time goes.

    python benchmarks/train_vs_torch.py --hf_python .venv-hf/bin/python [--data data/sample.csv]
        [--model MiniLM-L6-H384-uncased] [--batch_size 32] [--max_seq_len 128] [--rounds 5]

The batches are made once, as `make train` makes them (texts grouped by length, each batch padded
to its longest text rounded up to 8 tokens), and written to a .npz that a PyTorch worker (its own
interpreter, with torch and transformers: see hf_finetune.py) loads. The worker waits for a command
on stdin, runs one pass over every batch and prints its seconds, so the two frameworks alternate
(A B A B ...) on the same cores and a noisy machine slows both alike. Rows:

- keras fit (make train): what `make train` runs: AdamW (weight decay, clipnorm 1.0) compiled as one
  update (bertclf.training.optimizer), GELU, layer norms and attention softmax compiled with XLA
  (bertclf.training.fused),
  Keras's fit loop and metrics, tf.data from a generator
- keras fit, Keras's AdamW / Keras's layers: the same with Keras's own optimizer update / layers
- keras fit, XLA: the same with `jit_compile=True` (one compilation per batch width, untimed)
- tf forward+backward: the gradients alone (tf.function); tf forward: the training-mode forward pass
  alone; tf forward, XLA: the same jit-compiled
- tf.data pipeline alone: iterating the batches, no model
- torch step: forward, backward, clip_grad_norm_ 1.0, AdamW (weight decay 0.01), as a user writes it
- torch forward+backward, torch forward: as above

Both sides use every core (TensorFlow's default; torch.set_num_threads(os.cpu_count())), one at a time.
"""

import argparse
import contextlib
import functools
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bertclf.training.startup import import_tensorflow

if "--onednn" in sys.argv and sys.argv[sys.argv.index("--onednn") + 1 :][:1] == ["off"]:
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # read once, when TensorFlow loads

import_tensorflow()  # first: keeps TensorFlow's start-up chatter out of the report

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bertclf.config import DEFAULT_MODEL  # noqa: E402
from bertclf.inference.batches import XLA_WIDTH, training_order  # noqa: E402
from bertclf.pretrained import resolve  # noqa: E402
from bertclf.training.data import read_examples  # noqa: E402
from bertclf.training.fused import fused_layers  # noqa: E402
from bertclf.training.model import build_classifier, compile_classifier  # noqa: E402
from bertclf.training.pipeline import encode  # noqa: E402

# The PyTorch side, run by --hf_python with the checkpoint folder and the batches file.
TORCH_WORKER = r"""
import os, sys, time
import numpy as np, torch
from transformers import AutoModelForSequenceClassification
torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
folder, batches = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)
n = int(batches["count"])
data = [({"input_ids": torch.from_numpy(batches[f"token_ids_{i}"]).long(),
          "attention_mask": torch.from_numpy(batches[f"padding_mask_{i}"]).long(),
          "token_type_ids": torch.from_numpy(batches[f"segment_ids_{i}"]).long()},
         torch.from_numpy(batches[f"labels_{i}"]).long()) for i in range(n)]
model = AutoModelForSequenceClassification.from_pretrained(
    folder, num_labels=int(batches["classes"]), use_safetensors=True)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
def step(x, y):
    loss = model(**x, labels=y).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
def backward(x, y):
    model(**x, labels=y).loss.backward()
    model.zero_grad()
def forward(x, y):
    with torch.no_grad():
        model(**x)
run = {"step": step, "backward": backward, "forward": forward}
print("ready", flush=True)
for line in sys.stdin:
    work = run[line.strip()]
    start = time.perf_counter()
    for x, y in data:
        work(x, y)
    print(time.perf_counter() - start, flush=True)
"""


TORCH_ROWS = {"torch step": "step", "torch forward+backward": "backward", "torch forward": "forward"}


class TorchWorker:
    def __init__(self, python: str, folder: Path, batches: Path):
        self.process = subprocess.Popen(
            [python, "-c", TORCH_WORKER, str(folder), str(batches)],
            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            sys.exit(f"the PyTorch worker did not start ({python}: needs torch and transformers)")

    def seconds(self, work: str) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(work + "\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self):
        self.process.terminate()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf_python", required=True, help="interpreter with torch and transformers")
    parser.add_argument("--data", default="data/sample.csv")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a checkpoint in Hugging Face format (config.json)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per row (the median is reported)")
    parser.add_argument("--max_examples", type=int, default=384, help="texts per pass (a fixed workload)")
    parser.add_argument(
        "--onednn", choices=("on", "off"), default="on", help="TensorFlow's oneDNN kernels (TF_ENABLE_ONEDNN_OPTS)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="also write a TensorFlow profile of 2 passes of our fit to DIR (TensorBoard's profile tab, or xprof)",
    )
    args = parser.parse_args()

    examples = read_examples(args.data)
    texts = examples.texts[: args.max_examples]
    classes = sorted(set(examples.labels))
    labels = np.array([classes.index(label) for label in examples.labels[: args.max_examples]], dtype=np.int32)
    checkpoint = resolve(args.model)
    if not (checkpoint.path / "config.json").exists():
        sys.exit(f"{checkpoint.path}: not a Hugging Face folder (config.json); PyTorch cannot load it")

    patched = contextlib.ExitStack()  # fused layers, as make train fits (bertclf.training.fused): for the whole run

    def build(jit_compile=False, fused_update=True, fused=True):
        keras.utils.set_random_seed(0)
        classifier = build_classifier(checkpoint, len(classes), args.max_seq_len, 0.1)
        encoded = encode(classifier.preprocessor, texts)
        classifier.preprocessor = None
        compile_classifier(classifier, 3e-5, jit_compile=jit_compile, fused_update=fused_update)
        if fused and not jit_compile:
            patched.enter_context(fused_layers(classifier))
        return classifier, encoded

    classifier, encoded = build()
    order = training_order(encoded.lengths, args.batch_size, np.random.default_rng(0))
    batches = [(encoded.batch(index), labels[index]) for index in order]
    widths = sorted({x["token_ids"].shape[1] for x, _ in batches})

    # XLA compiles once per shape: the same batches padded further, to multiples of XLA_WIDTH tokens.
    bucketed = [(encoded.batch(index, multiple=XLA_WIDTH), labels[index]) for index in order]
    xla_widths = sorted({x["token_ids"].shape[1] for x, _ in bucketed})

    def generated(batches=batches):
        spec = {key: tf.TensorSpec((None, None), tf.int32) for key in batches[0][0]}
        data = tf.data.Dataset.from_generator(
            lambda: iter(batches), output_signature=(spec, tf.TensorSpec((None,), tf.int32))
        )
        return data.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(2)

    in_memory = [({k: tf.constant(v) for k, v in x.items()}, tf.constant(y)) for x, y in batches]
    xla, _ = build(jit_compile=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients(x, y):  # the gradients stay in the graph: only their norm comes out
        with tf.GradientTape() as tape:
            value = loss(y, classifier(x, training=True))
        return tf.linalg.global_norm(tape.gradient(value, classifier.trainable_variables))

    def forward(x, y):
        return tf.reduce_sum(classifier(x, training=True))

    def each(function):
        def run():
            for x, y in in_memory:
                function(x, y)

        return run

    def fit(model, batches=batches):
        data = generated(batches)  # made once, iterated once per pass, as make train iterates it once per epoch
        return lambda: model.fit(data, epochs=1, verbose=0, shuffle=False)

    data = generated()

    def pipeline():
        for _ in data:
            pass

    traced = functools.partial(tf.function, reduce_retracing=True)
    rows = {
        "keras fit (make train)": fit(classifier),
        "keras fit, Keras's AdamW": fit(build(fused_update=False)[0]),
        "keras fit, Keras's layers": fit(build(fused=False)[0]),
        "keras fit, XLA": fit(xla, bucketed),
        "tf forward+backward": each(traced(gradients)),  # classifier: fused layers, as make train's
        "tf forward": each(traced(forward)),
        "tf forward, XLA": each(traced(forward, jit_compile=True)),
        "tf.data pipeline alone": pipeline,
    }
    ours = list(rows)
    first = {}
    for name, run in rows.items():  # trace (XLA: compile every width) once: timed apart
        start = time.perf_counter()
        run()
        first[name] = time.perf_counter() - start
    if args.profile:  # two passes of make train's fit under TensorFlow's profiler, traced already
        tf.profiler.experimental.start(args.profile)
        for _ in range(2):
            rows["keras fit (make train)"]()
        tf.profiler.experimental.stop()
        print(f"profile of {2 * len(batches)} steps of keras fit written to {args.profile}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batches.npz"
        arrays = {"count": np.array(len(batches)), "classes": np.array(len(classes))}
        for i, (x, y) in enumerate(batches):
            arrays |= {f"{key}_{i}": value for key, value in x.items()} | {f"labels_{i}": y}
        np.savez(path, **arrays)
        worker = TorchWorker(args.hf_python, checkpoint.path, path)
        for name, work in TORCH_ROWS.items():
            worker.seconds(work)  # warm-up, untimed
            rows[name] = functools.partial(worker.seconds, work)
        # One after the other, ours and theirs interleaved, every round: noise slows both alike.
        order = [name for pair in itertools.zip_longest(ours, TORCH_ROWS) for name in pair if name]
        seconds: dict[str, list[float]] = {name: [] for name in order}
        for _ in range(args.rounds):
            for name in order:
                start = time.perf_counter()
                reported = rows[name]()
                seconds[name].append(reported if name in TORCH_ROWS else time.perf_counter() - start)
        worker.close()

    # The median round: a round that a neighbour's burst slowed does not move it.
    ms = {name: 1000 * float(np.median(seconds[name])) / len(batches) for name in seconds}
    print(
        f"{len(texts)} texts in {len(batches)} batches of {args.batch_size} (widths {widths[0]}-{widths[-1]} "
        f"tokens, {len(widths)} distinct), model {checkpoint.name}, {os.cpu_count()} cores, {args.rounds} rounds, "
        f"oneDNN {args.onednn}; ms/step of the median round"
    )
    reference = ms["torch step"]
    print(f"{'':<26}{'ms/step':>9}{'vs torch step':>15}{'first pass s':>14}")
    for name in [*ours, *TORCH_ROWS]:
        print(f"{name:<26}{ms[name]:>9.1f}{ms[name] / reference:>14.2f}x{first.get(name, float('nan')):>14.1f}")
    compile_cost = first["keras fit, XLA"] - first["keras fit (make train)"]
    saved = (ms["keras fit (make train)"] - ms["keras fit, XLA"]) / 1000
    print(
        f"XLA: {compile_cost:.0f} s more for the first pass ({len(xla_widths)} widths of {XLA_WIDTH} compiled, "
        f"{compile_cost / len(xla_widths):.1f} s each), then {saved * 1000:.0f} ms less a step: it pays after "
        f"{compile_cost / saved:.0f} steps"
        if saved > 0
        else "XLA: no faster here"
    )
    print(
        f"ours, a step: forward {ms['tf forward']:.0f} ms, "
        f"backward {ms['tf forward+backward'] - ms['tf forward']:.0f} ms; the whole step in fit "
        f"{ms['keras fit (make train)']:.0f} ms (the input pipeline alone {ms['tf.data pipeline alone']:.1f} ms, "
        "prefetched)"
    )
    print(
        f"torch, a step: forward {ms['torch forward']:.0f} ms, backward "
        f"{ms['torch forward+backward'] - ms['torch forward']:.0f} ms, clip + AdamW "
        f"{ms['torch step'] - ms['torch forward+backward']:.0f} ms"
    )


if __name__ == "__main__":
    main()
