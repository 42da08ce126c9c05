"""The fit stage: Keras's fit on length-grouped batches, early stopping on the validation loss (best
weights restored), TensorBoard logs with the learning rate per step, and the run's state saved as it
goes (resume.py) so an interrupted run continues where it stopped."""

import logging
import math
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from bertclf.config import IMBALANCE_RATIO, TrainConfig
from bertclf.inference.batches import LENGTH_MULTIPLE, XLA_WIDTH
from bertclf.training.pipeline import dataset
from bertclf.training.resume import (
    Checkpointer,
    EpochClock,
    Position,
    ResumableEarlyStopping,
    Run,
    config_record,
)
from bertclf.training.stages import EpochTimes, Stages

log = logging.getLogger(__name__)


class StepLearningRateLogger(keras.callbacks.Callback):
    """Write the learning rate of every step to TensorBoard, so the warmup/decay shape is visible."""

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = str(log_dir)
        self.writer = None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_batch_begin(self, batch, logs=None):
        assert self.writer is not None, "on_train_begin opens the writer"
        step = int(self.model.optimizer.iterations.numpy())
        with self.writer.as_default():
            tf.summary.scalar("learning_rate_per_step", self.model.optimizer.learning_rate, step=step)

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


class Throughput(keras.callbacks.Callback):
    """Training examples per second, counted over whole epochs (validation time excluded).

    Args:
        n_examples: training texts per epoch.
        partial_epoch: an epoch this process trains only part of (a resumed one), left out.
    """

    def __init__(self, n_examples, partial_epoch=None):
        super().__init__()
        self.n_examples = n_examples
        self.partial_epoch = partial_epoch
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._start = epoch, time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._epoch != self.partial_epoch:
            self.seconds.append(time.perf_counter() - self._start)

    @property
    def examples_per_second(self):
        # The first epoch includes tracing the training step once; report the steady state when we can.
        timed = self.seconds[1:] or self.seconds
        return self.n_examples * len(timed) / sum(timed) if timed else 0.0


class AverageIsBest(keras.callbacks.Callback):
    """With a moving average of the weights (--ema): the weights early stopping keeps when an epoch
    is its best so far are the average's, which that epoch's validation scored (SwapEMAWeights puts
    the average into the model for the validation pass only, so training goes on from its own weights).
    Runs after `stopping` at each epoch's end, before the checkpoint saves its best weights."""

    def __init__(self, stopping: keras.callbacks.EarlyStopping):
        super().__init__()
        self.stopping = stopping

    def on_epoch_end(self, epoch, logs=None):
        if self.stopping.best_epoch != epoch or self.stopping.wait != 0:
            return
        averages = self.model.optimizer.averages()
        self.stopping.best_weights = [
            np.array(averages[id(w)]) if id(w) in averages else np.array(w) for w in self.model.weights
        ]


def class_weights(cfg: TrainConfig, y_train: np.ndarray, classes: list[str]) -> dict[int, float] | None:
    """Per-class loss weights for `cfg.class_weight` (None: every text the same), said in the log."""
    counts = np.bincount(y_train, minlength=len(classes))
    ratio = counts.max() / max(counts.min(), 1)
    if cfg.class_weight == "sample":
        log.info(
            "classes: largest %.1fx the smallest; each epoch draws its %d texts so every class is drawn equally "
            "often (class_weight sample), the loss unweighted",
            ratio,
            len(y_train),
        )
        return None
    use = cfg.class_weight == "balanced" or (cfg.class_weight == "auto" and ratio >= IMBALANCE_RATIO)
    if not use:
        if cfg.class_weight == "auto":
            log.info("classes: largest %.1fx the smallest; no class weights (auto: from %dx)", ratio, IMBALANCE_RATIO)
        return None
    weights = {i: float(len(y_train) / (len(classes) * max(n, 1))) for i, n in enumerate(counts)}
    log.info(
        "classes: largest %.1fx the smallest; weighing them by inverse frequency (class_weight %s): %s",
        ratio,
        cfg.class_weight,
        ", ".join(f"{classes[i]} {w:.2f}" for i, w in weights.items()),
    )
    return weights


def balanced_sampling(cfg: TrainConfig, y_train: np.ndarray) -> bool:
    """class_weight sample, on single-label data (class indices, not a 0/1 matrix)."""
    return cfg.class_weight == "sample" and np.ndim(y_train) == 1


def fit(
    classifier, cfg: TrainConfig, encoded: dict, y: dict, run: Run, pad_to_max: bool, stages: Stages, weights=None
) -> dict:
    """Fit with early stopping on the validation loss (best weights restored), TensorBoard logs and
    the learning rate per step, saving the run's state as it goes (resume.py) and continuing from
    it when the run was interrupted; returns what model_config.json records of the training."""
    steps = math.ceil(len(encoded["train"]) / cfg.batch_size)
    start = run.position
    throughput = Throughput(len(encoded["train"]), partial_epoch=start.epoch if start.step else None)
    stopping = ResumableEarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    run.restore(classifier, stopping)
    before, started = float(run.state.get("seconds", 0.0)), time.perf_counter()
    clock = EpochClock(start.epoch)
    callbacks = [
        EpochTimes(stages),  # first: its epoch ends before the checkpoint is saved
        clock,
        keras.callbacks.TensorBoard(log_dir=str(run.logs)),
        StepLearningRateLogger(run.logs / "train"),
        *([keras.callbacks.SwapEMAWeights()] if cfg.ema else []),  # validation scores the average
        stopping,
        *([AverageIsBest(stopping)] if cfg.ema else []),
        throughput,
        Checkpointer(run, stopping, steps, cfg.checkpoint_every, lambda: before + time.perf_counter() - started),
    ]

    width = XLA_WIDTH if cfg.xla else LENGTH_MULTIPLE  # XLA compiles each batch shape: few widths

    def fit_epochs(first: int, last: int, skip: int) -> None:
        if stopping.stopped or first >= last:
            return
        train = dataset(
            encoded["train"],
            y["train"],
            cfg.batch_size,
            seed=cfg.seed,
            pad_to_max=pad_to_max,
            epoch=clock.now,
            skip=skip,
            multiple=width,
            balance=balanced_sampling(cfg, y["train"]),
        )
        classifier.fit(
            train,
            validation_data=dataset(
                encoded["validation"], y["validation"], cfg.batch_size, shuffle=False, multiple=width
            ),
            initial_epoch=first,
            epochs=last,
            callbacks=callbacks,
            class_weight=weights,
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # the dataset draws each epoch's length-grouped order from (seed, epoch)
        )

    if start.step:  # the interrupted epoch's remaining steps on their own, then the epochs after it
        fit_epochs(start.epoch, start.epoch + 1, start.step)
        start = Position(start.epoch + 1, 0)
    fit_epochs(start.epoch, cfg.n_epochs, 0)
    if stopping.best_weights is not None:  # the best epoch's weights, as restore_best_weights leaves them
        classifier.set_weights(stopping.best_weights)
    val_losses = run.history.get("val_loss", [])
    return {
        "epochs_run": len(val_losses),
        "best_epoch": int(np.argmin(val_losses)) + 1,
        "seconds": round(before + time.perf_counter() - started, 1),
        "examples_per_second": round(throughput.examples_per_second, 1) or None,  # None: no whole epoch ran here
        "padding": "max_seq_len" if pad_to_max else "per batch",
        "history": run.history,
        "resumed_from": config_record(run),
    }
