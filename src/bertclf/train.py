"""One training run, top to bottom: data -> model -> fit -> evaluate -> export."""

import contextlib
import dataclasses
import functools
import logging
import math
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from bertclf import __version__, golden
from bertclf.abstain import ABSTAIN_KEY, at_threshold, threshold_for_precision
from bertclf.batches import LENGTH_MULTIPLE, XLA_WIDTH, Encoded, predict_in_order
from bertclf.calibration import calibrate
from bertclf.checkpoints import resolve
from bertclf.config import IMBALANCE_RATIO, ConfigError, TrainConfig, choose_max_seq_len
from bertclf.data import Splits, load_splits
from bertclf.devices import is_chief, strategy_for
from bertclf.evaluate import (
    baseline_metrics,
    compute_metrics,
    compute_multilabel_metrics,
    write_evaluation,
    write_multilabel_evaluation,
)
from bertclf.files import sha256_of, write_json_atomic
from bertclf.fused import fused_layers
from bertclf.graph import UnsupportedModel, export_serving_graph
from bertclf.model import (
    build_classifier,
    choose_precision,
    compile_classifier,
    float32_twin,
    init_head_from_probe,
    set_training_precision,
)
from bertclf.multilabel import multi_hot, record, sigmoid, tune_thresholds
from bertclf.pieces import MAX_WINDOWS, average_windows
from bertclf.pipeline import dataset, encode, encode_windows, token_counts, traced_forward, traced_preprocessor
from bertclf.predictor import softmax
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, model_record, run_folder, save_labels, update_latest
from bertclf.resume import (
    Checkpointer,
    EpochClock,
    Position,
    ResumableEarlyStopping,
    Run,
    config_record,
    fingerprint,
    open_run,
)
from bertclf.schedule import build_schedule
from bertclf.stages import EpochTimes, Stages, table

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


def library_versions() -> dict:
    """Versions a model folder was made with, for reproducing it."""
    return {
        "bertclf": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "numpy": np.__version__,
    }


def _data_record(cfg: TrainConfig, splits: Splits) -> dict:
    """The data files (absolute path, path as given, SHA-256) and split sizes, for model_config.json."""
    files = {role: getattr(cfg, role) for role in ("data", "validation_data", "test_data")}
    return {
        **{
            role: {"file": str(Path(path).resolve()), "given": path, "sha256": sha256_of(path)}
            for role, path in files.items()
            if path
        },
        "n_train": len(splits.train),
        "n_validation": len(splits.validation),
        "n_test": len(splits.test),
        "rows_dropped": splits.dropped,
        "feedback": splits.feedback,
    }


def class_weights(cfg: TrainConfig, y_train: np.ndarray, classes: list[str]) -> dict[int, float] | None:
    """Per-class loss weights for `cfg.class_weight` (None: every text the same), said in the log."""
    counts = np.bincount(y_train, minlength=len(classes))
    ratio = counts.max() / max(counts.min(), 1)
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


def _fit(
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
        stopping,
        throughput,
        Checkpointer(run, stopping, steps, cfg.checkpoint_every, lambda: before + time.perf_counter() - started),
    ]

    width = XLA_WIDTH if cfg.xla else LENGTH_MULTIPLE  # XLA compiles each batch shape: few widths

    def fit(first: int, last: int, skip: int) -> None:
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
        fit(start.epoch, start.epoch + 1, start.step)
        start = Position(start.epoch + 1, 0)
    fit(start.epoch, cfg.n_epochs, 0)
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


def write_serving_graph(classifier, folder: Path, multi_label: bool = False) -> None:
    """serving/model.onnx, which serving runs without TensorFlow (a backbone without a graph serves on TensorFlow)."""
    try:
        export_serving_graph(classifier, folder, multi_label)
    except UnsupportedModel as err:
        log.info("%s: this model serves on TensorFlow (the training install)", err)


def served_probabilities(forward, encoded: Encoded, batch_size: int, multi_label: bool = False) -> np.ndarray:
    """A split's probabilities as the exported model serves them (windows averaged, if any)."""
    logits = np.asarray(predict_in_order(forward, encoded, batch_size), dtype=np.float64)
    rows = sigmoid(logits) if multi_label else softmax(logits)
    return rows if encoded.owners is None else average_windows(rows, encoded.owners, int(encoded.owners.max()) + 1)


def abstain_record(cfg: TrainConfig, probabilities, y: dict) -> dict | None:
    """The threshold below which the model answers null (`min_confidence`, or the one that reaches
    `target_precision` on the validation split), and the test split's coverage and accuracy at it.
    `probabilities(part)` gives a split's served probabilities."""
    if cfg.min_confidence is None and cfg.target_precision is None:
        return None

    record: dict = {}
    if cfg.target_precision is not None:
        validation = probabilities("validation")
        threshold, reached = threshold_for_precision(validation, y["validation"], cfg.target_precision)
        record["chosen_by"] = f"target_precision {cfg.target_precision:g} on the validation split"
        record["target_reached"] = reached
        record["validation"] = at_threshold(validation, y["validation"], threshold)
    else:
        threshold = float(cfg.min_confidence or 0.0)
        record["chosen_by"] = "min_confidence"
    test = at_threshold(probabilities("test"), y["test"], threshold)
    record = {"min_confidence": test["min_confidence"], **record, "test": test}
    if cfg.target_precision is not None and not record["target_reached"]:
        log.warning(
            "abstain: no threshold reaches precision %g on the validation split; min_confidence %.4f gives "
            "the best there (%s on %.0f%% of texts)",
            cfg.target_precision,
            threshold,
            record["validation"]["accuracy_answered"],
            100 * record["validation"]["coverage"],
        )
    log.info(
        "abstain: min_confidence %.4f (%s); test split: answers %d of %d texts (%.0f%%), %s of them right",
        threshold,
        record["chosen_by"],
        test["answered"],
        test["texts"],
        100 * test["coverage"],
        "none" if test["accuracy_answered"] is None else f"{100 * test['accuracy_answered']:.1f}%",
    )
    return record


def long_text_record(windowed: Encoded, truncated: dict) -> dict:
    """How many test texts the windows read whole, and the truncated model's scores to compare."""
    assert windowed.owners is not None
    per_text = np.bincount(windowed.owners)
    log.info(
        "long_text window: %d of %d test texts read as several windows (at most %d); truncated they score "
        "accuracy %.4f, macro-F1 %.4f",
        int((per_text > 1).sum()),
        len(per_text),
        MAX_WINDOWS,
        truncated["accuracy"],
        truncated["macro_f1"],
    )
    return {
        "mode": "window",
        "texts_windowed": int((per_text > 1).sum()),
        "max_windows": MAX_WINDOWS,
        "truncated": {"accuracy": truncated["accuracy"], "macro_f1": truncated["macro_f1"]},
    }


def write_golden_texts(
    folder: Path, forward, encoded: Encoded, y: np.ndarray, texts: list[str], batch_size: int, multi_label=False
):
    """golden.json: a few test texts and the probabilities the final (calibrated) Keras model gives
    them, which every load of the folder compares its engine's answers with (golden.py)."""
    by_class = y.argmax(axis=1) if multi_label else y  # multi-label: by each text's first class
    chosen = np.array(golden.choose(by_class, encoded.lengths, texts), dtype=int)
    subset = encoded.subset(chosen)
    probabilities = served_probabilities(forward, subset, batch_size, multi_label)
    golden.write(folder, [texts[i] for i in chosen], probabilities, subset.lengths)


def train(cfg: TrainConfig, pad_to_max: bool = False) -> tuple[Path | None, dict]:
    """Fine-tune, evaluate and export one model; point latest_model_config.json at it.

    Args:
        cfg: the run's settings.
        pad_to_max: pad every batch to max_seq_len (the slow way; only the benchmark uses it).

    Returns:
        (exported folder, its model_config dict); on a worker of several machines that is not the
        chief, which exports nothing: (None, {"training": what it recorded of the fit}).
    """
    stages = Stages()
    # First, before TensorFlow sets up its devices: splitting the CPU (cpu:N) needs it.
    strategy, distribution = strategy_for(cfg.devices)
    try:
        # Everything built from here on (model, optimizer, the float32 twin) lives on the chosen devices.
        with strategy.scope(), contextlib.ExitStack() as runs:
            return _train(cfg, pad_to_max, distribution, runs, stages)
    finally:  # a mixed-precision run leaves nothing behind for the next model built in this process
        keras.mixed_precision.set_global_policy("float32")


def _train(
    cfg: TrainConfig, pad_to_max: bool, distribution: dict, runs: contextlib.ExitStack, stages: Stages
) -> tuple[Path | None, dict]:
    created = datetime.now()
    short_id = uuid.uuid4().hex[:8]

    # === Data ===
    with stages("read data"):
        splits = load_splits(cfg)
    classes = splits.classes
    index = {name: i for i, name in enumerate(classes)}
    parts = ("train", "validation", "test")
    multi = splits.multi_label
    if multi:
        y = {part: multi_hot(splits.label_sets(part), classes) for part in parts}
        if cfg.min_confidence is not None or cfg.target_precision is not None:
            raise ConfigError(
                "min_confidence and target_precision are for single-label models; a multi-label model gives "
                "each text every label at or above that label's tuned threshold"
            )
    else:
        y = {part: np.array([index[label] for label in getattr(splits, part).labels]) for part in parts}
    log.info(
        "data: %d train / %d validation / %d test examples, %d %s",
        len(splits.train),
        len(splits.validation),
        len(splits.test),
        len(classes),
        "labels (multi-label: several per text)" if multi else "classes",
    )

    weights = None if multi else class_weights(cfg, y["train"], classes)
    if multi and cfg.class_weight == "balanced":
        log.warning("class_weight balanced is for single-label data; multi-label trains without class weights")

    # === Model ===
    with stages("load the pretrained model"):
        checkpoint = resolve(cfg.model, cfg.models_dir)
    cfg = cfg.with_max_learn_rate(checkpoint.family, checkpoint.num_layers)  # saved resolved, as used
    keras.utils.set_random_seed(cfg.seed)
    precision, precision_reason = choose_precision(cfg.precision)
    log.info("precision %s (%s)", precision, precision_reason)
    cfg = dataclasses.replace(cfg, precision=precision)  # saved resolved, as used
    set_training_precision(cfg.precision)  # the policy the model is built and fitted with
    auto_length = cfg.max_seq_len == "auto"
    length = checkpoint.max_sequence_length if auto_length else int(cfg.max_seq_len)
    with stages("load the pretrained model"):
        classifier = build_classifier(checkpoint, len(classes), length, cfg.dropout)
    preprocessor = classifier.preprocessor
    with stages("tokenize"):
        lengths = token_counts(preprocessor, splits.train.texts)  # before truncation
    if auto_length:
        length = choose_max_seq_len(lengths, checkpoint.max_sequence_length)
        preprocessor.sequence_length = length  # the exported preprocessor.json records it too
        log.info("max_seq_len auto: %d tokens (95%% of the training texts fit)", length)
    cfg = dataclasses.replace(cfg, max_seq_len=length)  # saved resolved, as used
    # Tokenize every split once; the model then trains on token ids with the preprocessor detached.
    with stages("tokenize"):
        tokenize = traced_preprocessor(preprocessor)
        encoded = {part: encode(tokenize, getattr(splits, part).texts) for part in parts}
    cut = int((lengths > length).sum())
    classifier.preprocessor = None
    # The run's checkpoint folder, found again after an interruption by what makes the fit the same.
    run_cfg = cfg
    if "workers" in distribution:  # several machines: every worker would need the chief's checkpoint
        log.info("resume: not across several machines; this run starts from the pretrained checkpoint")
        run_cfg = dataclasses.replace(cfg, resume="never")
    if not is_chief(distribution):  # its checkpoints and logs go to a temporary folder, not into models/
        scratch = tempfile.mkdtemp(prefix="bertclf-worker-")
        runs.callback(shutil.rmtree, scratch, ignore_errors=True)
        run_cfg = dataclasses.replace(run_cfg, models_dir=scratch)
    run = runs.enter_context(open_run(run_cfg, checkpoint.name, fingerprint(cfg, splits)))
    created, short_id = run.begin(created, short_id)
    # GELU, layer norms and attention softmax compiled (bertclf.fused) for the probe's forward pass
    # and the fit; Keras's own layers again for the evaluation and the export.
    fusing = runs.enter_context(contextlib.ExitStack())
    if not cfg.xla:  # --xla compiles the whole step anyway
        fusing.enter_context(fused_layers(classifier))
    if cfg.head_init == "probe" and not run.has_checkpoint:  # a checkpoint's weights replace the head anyway
        with stages("probe head (head_init=probe)"):
            init_head_from_probe(
                classifier, encoded["train"], y["train"], cfg.batch_size, balanced=weights is not None, seed=cfg.seed
            )
    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch_size)
    compile_classifier(
        classifier,
        build_schedule(cfg, steps_per_epoch),
        layer_decay=cfg.layer_decay,
        num_layers=checkpoint.num_layers,
        multi_label=multi,
        jit_compile=cfg.xla,
    )
    if cfg.xla:
        log.info(
            "xla: the training step is compiled once per batch shape (batches padded to multiples of %d tokens: "
            "at most %d widths; each one's first step is slow)",
            XLA_WIDTH,
            math.ceil(length / XLA_WIDTH),
        )
    log.info(
        "model: %s (%s, %s parameters, max_learn_rate %g); median text length %d tokens; %d of %d training "
        "texts (%.1f%%) are longer than max_seq_len %d and are cut (longest: %d tokens)",
        checkpoint.name,
        checkpoint.family,
        f"{classifier.count_params():,}",
        cfg.max_learn_rate,
        int(np.median(lengths)),
        cut,
        len(lengths),
        100 * cut / max(len(lengths), 1),
        cfg.max_seq_len,
        int(lengths.max(initial=0)),
    )
    data_record = _data_record(cfg, splits)
    data_record["train_tokens"] = {
        "median": int(np.median(lengths)),
        "p90": int(np.percentile(lengths, 90)),
        "max": int(lengths.max(initial=0)),
        "cut_at_max_seq_len": cut,
        "max_seq_len_auto": auto_length,
        "cut_share": round(cut / max(len(lengths), 1), 4),
    }

    # === Fit === (resumable: the run folder keeps its state until the model is exported)
    fitting, fitted = time.perf_counter(), sum(stages.seconds.values())
    training = _fit(classifier, cfg, encoded, y, run, pad_to_max, stages, weights)
    fusing.close()
    epochs = sum(stages.seconds.values()) - fitted
    stages.add("checkpoints, logs, restoring the best epoch", time.perf_counter() - fitting - epochs)
    training["precision"] = cfg.precision
    training["precision_reason"] = precision_reason
    training["distribution"] = distribution
    if cfg.precision != "float32":  # evaluated, calibrated and exported in float32
        with stages("float32 copy of the model"):
            classifier = float32_twin(classifier)
    training["class_weights"] = None if weights is None else {classes[i]: w for i, w in weights.items()}
    training["steps_per_epoch"] = steps_per_epoch
    if not is_chief(distribution):
        log.info("%s: training done; the chief evaluates and exports the model", distribution["task"])
        return None, {"training": training}

    with run_folder(cfg.models_dir, checkpoint.name, created) as (work, final):
        run.exporting(work)
        with stages("write the folder"):
            if run.logs.is_dir():
                shutil.copytree(run.logs, work / "logs")

        # === Evaluate ===
        with stages("test evaluation"):
            forward = traced_forward(classifier)
            logits = predict_in_order(forward, encoded["test"], cfg.batch_size)
        with stages("TF-IDF baseline"):
            baseline = baseline_metrics(splits.train.texts, y["train"], splits.test.texts, y["test"])
        calibration = None
        if cfg.calibration == "temperature" and multi:
            log.info("calibration: not for multi-label models (each label's threshold is tuned instead)")
        elif cfg.calibration == "temperature":  # folds 1/T into the output layer before the export
            with stages("calibration"):
                validation_logits = predict_in_order(forward, encoded["validation"], cfg.batch_size)
                calibration = calibrate(classifier, validation_logits, y["validation"], logits, y["test"])
            fit = calibration[0]
            if fit["kept"]:
                log.info(
                    "calibration: temperature %.2f (fitted on the validation split); test expected calibration "
                    "error %.3f -> %.3f, negative log-likelihood %.3f -> %.3f",
                    fit["temperature"],
                    fit["ece_before"],
                    fit["ece_after"],
                    fit["nll_before"],
                    fit["nll_after"],
                )
            else:
                log.info(
                    "calibration: the temperature fitted on the validation split (%.2f) did not help its "
                    "held-out folds, so the probabilities are left as trained (test expected calibration "
                    "error %.3f; with it it would have been %.3f)",
                    fit["fitted_temperature"],
                    fit["ece_before"],
                    fit["ece_fitted"],
                )
        # What the exported (calibrated) model serves: with long_text window, long texts as windows.
        served = dict(encoded)
        if cfg.long_text == "window":
            keys = set(encoded["test"].features)
            for part in ("validation", "test"):
                served[part] = encode_windows(preprocessor, getattr(splits, part).texts, keys)

        @functools.cache  # abstaining and windows both read the test split: one forward pass
        def probabilities(part):
            return served_probabilities(forward, served[part], cfg.batch_size, multi)

        with stages("test evaluation"):
            extra: dict = {}
            if multi:
                thresholds = tune_thresholds(probabilities("validation"), y["validation"])
                log.info(
                    "multi-label thresholds (best F1 on the validation split): %s",
                    ", ".join(f"{name} {t:.2f}" for name, t in zip(classes, thresholds, strict=True)),
                )
                test_probabilities = probabilities("test")
                if cfg.long_text == "window":
                    truncated = compute_multilabel_metrics(y["test"], sigmoid(logits) >= thresholds, classes)
                    extra["long_text"] = long_text_record(served["test"], truncated)
                metrics = write_multilabel_evaluation(
                    work, y["test"], test_probabilities, thresholds, classes, baseline, extra
                )
            else:
                abstaining = abstain_record(cfg, probabilities, y)
                if abstaining:
                    extra[ABSTAIN_KEY] = abstaining
                windowed = None
                if cfg.long_text == "window":
                    windowed = probabilities("test")
                    truncated = compute_metrics(y["test"], np.asarray(logits).argmax(axis=1), classes)
                    extra["long_text"] = long_text_record(served["test"], truncated)
                metrics = write_evaluation(work, y["test"], logits, classes, baseline, calibration, extra, windowed)
        with stages("golden set"):
            write_golden_texts(work, forward, encoded["test"], y["test"], splits.test.texts, cfg.batch_size, multi)

        # === Export ===
        with stages("save the weights"):
            classifier.preprocessor = preprocessor
            classifier.optimizer = None  # Adam's moments would triple the folder's size; serving never needs them
            classifier.save_to_preset(str(work))  # JSON configs + .weights.h5: no code, no pickle
        with stages("ONNX export and parity check"):
            write_serving_graph(classifier, work, multi)
        with stages("write the folder"):
            save_labels(classes, work / LABELS_FILE)
            model_config = model_record(
                short_id=short_id,
                created=created,
                family=checkpoint.family,
                base_model=checkpoint.name,
                hyperparameters=cfg.to_dict(),
                classes=classes,
                data=data_record,
                training=training,
                metrics={
                    "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"],
                    **({"micro_f1": metrics["micro_f1"]} if multi else {}),
                    "baseline": baseline,
                    **({"calibration": metrics["calibration"]} if "calibration" in metrics else {}),
                },
                abstain=None if multi else abstaining,
                multi_label=record(splits.separator, classes, thresholds) if multi else None,
                versions=library_versions(),
            )
            write_json_atomic(work / MODEL_CONFIG_FILE, model_config)
        timing = stages.record()
        log.debug("where the run's time went:\n%s", table(timing))
        metrics["time"] = timing
        write_json_atomic(work / "metrics.json", metrics)
    update_latest(cfg.models_dir, final, model_config)
    return final, model_config
