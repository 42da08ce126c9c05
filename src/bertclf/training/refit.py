"""`--refit all`: use every label the user gave.

A run trains on the training split and keeps the validation and test splits to choose the epoch,
the calibration and the thresholds, and to measure the model. With `--refit all`, once it has done
all that, it trains once more from the pretrained checkpoint on train + validation + test with the
same choices (the same learning-rate schedule per epoch, stopped after the epoch early stopping
chose; the same class weights, temperature and thresholds), and exports that model. No text is
left to measure the refit on: the test metrics describe the model of the split run, and
metrics.json and model_config.json say so beside the refit's own training history.
"""

import contextlib
import dataclasses
import logging
import math
import sys
import time

import keras
import numpy as np

from bertclf.config import TrainConfig
from bertclf.inference.batches import LENGTH_MULTIPLE, XLA_WIDTH, Encoded
from bertclf.pretrained import Checkpoint
from bertclf.training.calibration import fold_temperature
from bertclf.training.fit import balanced_sampling
from bertclf.training.fused import fused_layers
from bertclf.training.model import (
    build_classifier,
    compile_for_run,
    float32_twin,
    init_head_from_probe,
    set_training_precision,
)
from bertclf.training.pipeline import dataset
from bertclf.training.stages import EpochTimes, Stages

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
NOTE = (
    "the test metrics describe the model trained on the training split, which chose the epochs and calibration; "
    "the exported model was trained again on train + validation + test with those choices, so no held-out "
    "text is left to measure it on"
)


def joined(encoded: dict[str, Encoded]) -> Encoded:
    """The three splits' token arrays as one (each is padded to max_seq_len, so they stack)."""
    keys = encoded["train"].features
    return Encoded(
        {key: np.concatenate([encoded[part].features[key] for part in PARTS]) for key in keys},
        np.concatenate([encoded[part].lengths for part in PARTS]),
    )


@dataclasses.dataclass
class Refit:
    classifier: object  # the refitted KerasHub classifier, float32, calibrated as the split model was
    record: dict  # what metrics.json and model_config.json ("training": {"refit": ...}) record


def refit_all(
    cfg: TrainConfig,
    checkpoint: Checkpoint,
    num_classes: int,
    encoded: dict[str, Encoded],
    y: dict[str, np.ndarray],
    epochs: int,
    weights: dict[int, float] | None,
    multi_label: bool,
    stages: Stages,
    log_dir: str,
) -> Refit:
    """Train from the pretrained checkpoint on every split for `epochs` epochs (the split run's best
    epoch) with the split run's settings: its learning-rate schedule over cfg.n_epochs epochs of the
    larger data (so epoch e sees the learning rates the split run's epoch e saw), its class weights,
    its probe head, precision and seed. Returns the float32 model, not yet calibrated."""
    every = joined(encoded)
    labels = np.concatenate([y[part] for part in PARTS])
    log.info(
        "refit all: training again on all %d labelled texts (train + validation + test) for %d epoch%s, "
        "the split run's best",
        len(every),
        epochs,
        "" if epochs == 1 else "s",
    )
    started = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    set_training_precision(cfg.precision)  # the split run's float32 copy set the policy back to float32
    with stages("refit: build the model"):
        classifier = build_classifier(checkpoint, num_classes, int(cfg.max_seq_len), cfg.dropout)
    classifier.preprocessor = None  # fed token ids, as the split run
    with fused_layers(classifier) if not cfg.xla else contextlib.nullcontext():
        sampled = balanced_sampling(cfg, labels)
        if cfg.head_init == "probe":
            with stages("refit: probe head"):
                balanced = weights is not None or sampled
                init_head_from_probe(classifier, every, labels, cfg.batch_size, balanced=balanced, seed=cfg.seed)
        steps = math.ceil(len(every) / cfg.batch_size)
        compile_for_run(classifier, cfg, checkpoint.num_layers, steps, multi_label)
        history = classifier.fit(
            dataset(
                every,
                labels,
                cfg.batch_size,
                seed=cfg.seed,
                multiple=XLA_WIDTH if cfg.xla else LENGTH_MULTIPLE,
                balance=sampled,
            ),
            epochs=epochs,
            callbacks=[EpochTimes(stages, refit=True), keras.callbacks.TensorBoard(log_dir=log_dir)],
            class_weight=weights,
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # the dataset draws each epoch's length-grouped order from (seed, epoch)
        )
    if cfg.ema:  # the average, as the split run exported
        classifier.optimizer.use_averages(classifier.trainable_variables)
    if cfg.precision != "float32":
        with stages("float32 copy of the model"):
            classifier = float32_twin(classifier)
    record = {
        "texts": len(every),
        "epochs": epochs,
        "steps_per_epoch": steps,
        "seconds": round(time.perf_counter() - started, 1),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        "note": NOTE,
    }
    return Refit(classifier, record)


def calibrate_like(refit: Refit, calibration: dict | None) -> None:
    """Fold the split model's kept temperature into the refitted model (the calibration it chose)."""
    if calibration and calibration.get("kept"):
        fold_temperature(refit.classifier, float(calibration["temperature"]))
        refit.record["temperature"] = calibration["temperature"]
