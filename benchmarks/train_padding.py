"""Training throughput with per-batch padding vs every batch padded to max_seq_len, in mixed
precision (bfloat16 compute, per-batch padding), and on two devices (the CPU split in two,
MirroredStrategy), in one run.

    python benchmarks/train_padding.py [--data data/sample.csv] [--model MiniLM-L6-H384-uncased]
        [--batch_size 32] [--max_seq_len 128] [--rounds 2]

Every mode trains the same model on the same batches of the same texts, with the layers `make
train` fits (bertclf.training.fused) and, in mixed precision, its float32 residual stream; the modes
alternate (A B A B ...) so a noisy, shared machine slows both alike. The first pass of each mode
traces the training step (and compiles each batch width) and is not timed. The texts' length
matters: on data/sample.csv's 15-token texts the matrix products are too small for bfloat16 to
pay; `make bench-train` also runs it on the 4,000-text real set (median 88 tokens).
"""

import argparse
import contextlib
import time

from bertclf.training.startup import import_tensorflow

import_tensorflow()  # first: keeps TensorFlow's start-up chatter out of the report

from bertclf.training.devices import strategy_for  # noqa: E402

# Before TensorFlow sets up its devices: the CPU split in two, for the two-device row.
TWO_DEVICES, _ = strategy_for("cpu:2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bertclf.config import DEFAULT_MODEL  # noqa: E402
from bertclf.cpu import BF16_CPU_FLAGS, cpu_flags  # noqa: E402
from bertclf.pretrained import resolve  # noqa: E402
from bertclf.training.data import read_examples  # noqa: E402
from bertclf.training.fused import fused_layers  # noqa: E402
from bertclf.training.model import build_classifier, compile_classifier  # noqa: E402
from bertclf.training.pipeline import dataset, encode  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/sample.csv")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="timed passes per mode")
    parser.add_argument("--max_examples", type=int, default=384, help="texts per pass (a fixed workload)")
    args = parser.parse_args()

    examples = read_examples(args.data)
    texts = examples.texts[: args.max_examples]
    classes = sorted(set(examples.labels))
    labels = np.array([classes.index(label) for label in examples.labels[: args.max_examples]])
    checkpoint = resolve(args.model)
    models = {}
    fusing = contextlib.ExitStack()  # each model's layers as make train fits them, until the end
    for mode in ("per batch", "max_seq_len", "mixed_bfloat16", "2 devices"):
        # A layer keeps the dtype policy it was built under: the mixed model computes in bfloat16.
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if mode == "mixed_bfloat16" else "float32")
        # The two-device model lives in MirroredStrategy's scope: each step splits the batch in two.
        with TWO_DEVICES.scope() if mode == "2 devices" else contextlib.nullcontext():
            classifier = build_classifier(checkpoint, len(classes), args.max_seq_len, 0.1)
            encoded = encode(classifier.preprocessor, texts)
            classifier.preprocessor = None
            fusing.enter_context(fused_layers(classifier))
            compile_classifier(classifier, 3e-5)
        data = dataset(encoded, labels, args.batch_size, seed=0, pad_to_max=mode == "max_seq_len")
        classifier.fit(data, epochs=1, verbose=0, shuffle=False)  # trace once, untimed
        models[mode] = (classifier, data)
    keras.mixed_precision.set_global_policy("float32")
    bf16 = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    print(
        f"{len(texts)} texts, median {int(np.median(encoded.lengths))} tokens, "
        f"max_seq_len {args.max_seq_len}, batch {args.batch_size}, model {checkpoint.name}"
    )

    seconds = dict.fromkeys(models, 0.0)
    for _ in range(args.rounds):
        for mode, (classifier, data) in models.items():
            start = time.perf_counter()
            classifier.fit(data, epochs=1, verbose=0, shuffle=False)
            seconds[mode] += time.perf_counter() - start
    rate = {mode: len(texts) * args.rounds / s for mode, s in seconds.items()}
    print(f"{'padding':<14}{'examples/s':>12}")
    for mode, value in rate.items():
        print(f"{mode:<14}{value:>12.1f}")
    print(f"per-batch padding is {rate['per batch'] / rate['max_seq_len']:.2f}x padding to max_seq_len")
    hardware = f"bfloat16 in hardware: {', '.join(bf16)}" if bf16 else "emulated: no avx512_bf16 or amx_bf16"
    ratio = rate["mixed_bfloat16"] / rate["per batch"]
    print(f"mixed_bfloat16 is {ratio:.2f}x float32 (per-batch padding both; {hardware})")
    print(
        f"2 devices (the CPU split in two, MirroredStrategy) is {rate['2 devices'] / rate['per batch']:.2f}x one "
        "device: the path GPUS=0,1 takes; on one CPU it only adds the split and the gradient sum"
    )


if __name__ == "__main__":
    main()
