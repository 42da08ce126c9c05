"""Does a multi-label model serve as fast as a single-label one? Same weights, two graphs.

    python benchmarks/multilabel_speed.py [--model_dir models/trained/<folder>] [--texts data/sample.csv]
        [--rounds 5]

Builds the serving graph of one trained model twice from its Keras weights, ending in Softmax
(single-label) and in Sigmoid (multi-label), and times ONNX Runtime over the same encoded texts
with the Predictor's batching, alternating A B A B so a noisy machine slows both alike. Prints the
median seconds of each and their ratio.
"""

import argparse
import statistics
import time

from bertclf.training.startup import import_tensorflow

import_tensorflow()  # first: keeps TensorFlow's start-up chatter out of the report

from bertclf.inference.batches import predict_in_order  # noqa: E402
from bertclf.inference.predictor import Predictor  # noqa: E402
from bertclf.inference.runtime import OnnxForward  # noqa: E402
from bertclf.registry import chosen_model_folder  # noqa: E402
from bertclf.training.data import read_examples  # noqa: E402
from bertclf.training.keras_engine import load_classifier  # noqa: E402
from bertclf.training.onnx_writer import build_graph  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", help="a trained model folder (default: the latest)")
    parser.add_argument("--texts", default="data/sample.csv")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    folder = chosen_model_folder("models", args.model_dir)
    predictor = Predictor(folder)
    classifier, _ = load_classifier(folder, len(predictor.classes), predictor.sequence_length)
    encoded = predictor._encode(read_examples(args.texts).texts)
    forwards = {
        name: OnnxForward(build_graph(classifier, multi).SerializeToString())
        for name, multi in (("softmax (single-label)", False), ("sigmoid (multi-label)", True))
    }
    times: dict[str, list[float]] = {name: [] for name in forwards}
    for forward in forwards.values():  # untimed warm-up of each
        predict_in_order(forward, encoded, predictor.batch_size)
    for _ in range(args.rounds):
        for name, forward in forwards.items():
            started = time.perf_counter()
            predict_in_order(forward, encoded, predictor.batch_size)
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{len(encoded)} texts from {args.texts}, {folder.name}, median of {args.rounds} alternating rounds:")
    for name, seconds in medians.items():
        print(f"  {name:<24} {seconds:.3f} s ({len(encoded) / seconds:.0f} texts/s)")
    single, multi = medians.values()
    print(f"  multi-label / single-label time: {multi / single:.3f}")


if __name__ == "__main__":
    main()
