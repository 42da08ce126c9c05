"""One training run, top to bottom. `train` runs the stages in order, each a function named for it:

    data       load_splits (data.py)                      read, split and check the labelled files
    model      prepare_model (here)                       checkpoint, precision, tokenize every split once
    fit        fit (fit.py)                               resumable; the probe head first (model.py)
    calibrate  calibrate_model (calibration.py)           temperature on the validation split
    evaluate   evaluate_model (evaluate.py)               test metrics, baseline, thresholds, golden texts
    export     export_model (export.py)                   the model folder; latest_model_config.json

and prints where the time went (stages.py)."""

import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bertclf.config import ConfigError, TrainConfig, choose_max_seq_len
from bertclf.files import write_json_atomic
from bertclf.inference.batches import XLA_WIDTH, predict_in_order
from bertclf.inference.multilabel import multi_hot
from bertclf.inference.precision import RECORD_KEY
from bertclf.pretrained import Checkpoint, resolve
from bertclf.registry import run_folder, update_latest
from bertclf.training.calibration import calibrate_model
from bertclf.training.data import Splits, load_splits
from bertclf.training.devices import is_chief, strategy_for
from bertclf.training.evaluate import baseline_metrics, evaluate_model
from bertclf.training.export import data_record, export_model, write_golden_texts
from bertclf.training.fit import balanced_sampling, class_weights, fit
from bertclf.training.fused import fused_layers
from bertclf.training.model import (
    build_classifier,
    choose_precision,
    compile_for_run,
    float32_twin,
    init_head_from_probe,
    set_training_precision,
)
from bertclf.training.pipeline import encode, token_counts, traced_forward, traced_preprocessor
from bertclf.training.refit import calibrate_like, refit_all
from bertclf.training.report import write_report
from bertclf.training.resume import fingerprint, open_run
from bertclf.training.stages import Stages, table

log = logging.getLogger(__name__)


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


def targets(cfg: TrainConfig, splits: Splits) -> dict[str, np.ndarray]:
    """Each split's labels as the fit takes them: class indices, or a 0/1 matrix for multi-label data."""
    parts, classes = ("train", "validation", "test"), splits.classes
    if splits.multi_label:
        if cfg.min_confidence is not None or cfg.target_precision is not None:
            raise ConfigError(
                "min_confidence and target_precision are for single-label models; a multi-label model gives "
                "each text every label at or above that label's tuned threshold"
            )
        return {part: multi_hot(splits.label_sets(part), classes) for part in parts}
    index = {name: i for i, name in enumerate(classes)}
    return {part: np.array([index[label] for label in getattr(splits, part).labels]) for part in parts}


@dataclasses.dataclass
class Prepared:
    """The model stage's result: the classifier to fit and every split tokenized once."""

    checkpoint: Checkpoint
    classifier: Any  # KerasHub TextClassifier, its preprocessor detached (we feed token ids)
    preprocessor: Any
    encoded: dict  # split name -> Encoded
    lengths: np.ndarray  # the training texts' token counts before truncation
    precision_reason: str
    auto_length: bool  # max_seq_len auto: chosen from `lengths`


def prepare_model(cfg: TrainConfig, splits: Splits, stages: Stages) -> tuple[TrainConfig, Prepared]:
    """The model stage: resolve and load the checkpoint, choose the precision and max_seq_len (auto),
    build the classifier, tokenize every split. Returns the settings as resolved (saved so) and the model."""
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
        classifier = build_classifier(checkpoint, len(splits.classes), length, cfg.dropout)
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
        encoded = {part: encode(tokenize, getattr(splits, part).texts) for part in ("train", "validation", "test")}
    classifier.preprocessor = None
    return cfg, Prepared(checkpoint, classifier, preprocessor, encoded, lengths, precision_reason, auto_length)


def token_record(cfg: TrainConfig, lengths: np.ndarray, auto_length: bool) -> dict:
    """The training texts' lengths against max_seq_len, for model_config.json (and said in the log)."""
    cut = int((lengths > int(cfg.max_seq_len)).sum())
    return {
        "median": int(np.median(lengths)),
        "p90": int(np.percentile(lengths, 90)),
        "max": int(lengths.max(initial=0)),
        "cut_at_max_seq_len": cut,
        "max_seq_len_auto": auto_length,
        "cut_share": round(cut / max(len(lengths), 1), 4),
    }


def _train(
    cfg: TrainConfig, pad_to_max: bool, distribution: dict, runs: contextlib.ExitStack, stages: Stages
) -> tuple[Path | None, dict]:
    created = datetime.now()
    short_id = uuid.uuid4().hex[:8]

    # === Data ===
    with stages("read data"):
        splits = load_splits(cfg)
    classes, multi = splits.classes, splits.multi_label
    y = targets(cfg, splits)
    log.info(
        "data: %d train / %d validation / %d test examples, %d %s",
        len(splits.train),
        len(splits.validation),
        len(splits.test),
        len(classes),
        "labels (multi-label: several per text)" if multi else "classes",
    )
    weights = None if multi else class_weights(cfg, y["train"], classes)
    if multi and cfg.class_weight in ("balanced", "sample"):
        log.warning(
            "class_weight %s is for single-label data; multi-label trains without class weights", cfg.class_weight
        )

    # === Model ===
    cfg, model = prepare_model(cfg, splits, stages)
    classifier, checkpoint, encoded, lengths = model.classifier, model.checkpoint, model.encoded, model.lengths
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
    # GELU, layer norms and attention softmax compiled (bertclf.training.fused) for the probe's forward
    # pass and the fit; Keras's own layers again for the evaluation and the export.
    fusing = runs.enter_context(contextlib.ExitStack())
    if not cfg.xla:  # --xla compiles the whole step anyway
        fusing.enter_context(fused_layers(classifier))
    if cfg.head_init == "probe" and not run.has_checkpoint:  # a checkpoint's weights replace the head anyway
        with stages("probe head (head_init=probe)"):
            init_head_from_probe(
                classifier,
                encoded["train"],
                y["train"],
                cfg.batch_size,
                balanced=weights is not None or balanced_sampling(cfg, y["train"]),
                seed=cfg.seed,
            )
    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch_size)
    compile_for_run(classifier, cfg, checkpoint.num_layers, steps_per_epoch, multi)
    if cfg.xla:
        log.info(
            "xla: the training step is compiled once per batch shape (batches padded to multiples of %d tokens: "
            "at most %d widths; each one's first step is slow)",
            XLA_WIDTH,
            math.ceil(int(cfg.max_seq_len) / XLA_WIDTH),
        )
    tokens = token_record(cfg, lengths, model.auto_length)
    log.info(
        "model: %s (%s, %s parameters, max_learn_rate %g); median text length %d tokens; %d of %d training "
        "texts (%.1f%%) are longer than max_seq_len %d and are cut (longest: %d tokens)",
        checkpoint.name,
        checkpoint.family,
        f"{classifier.count_params():,}",
        cfg.max_learn_rate,
        tokens["median"],
        tokens["cut_at_max_seq_len"],
        len(lengths),
        100 * tokens["cut_share"],
        cfg.max_seq_len,
        tokens["max"],
    )
    data = {**data_record(cfg, splits), "train_tokens": tokens}

    # === Fit === (resumable: the run folder keeps its state until the model is exported)
    fitting, fitted = time.perf_counter(), sum(stages.seconds.values())
    training = fit(classifier, cfg, encoded, y, run, pad_to_max, stages, weights)
    fusing.close()
    epochs = sum(stages.seconds.values()) - fitted
    stages.add("checkpoints, logs, restoring the best epoch", time.perf_counter() - fitting - epochs)
    training["precision"] = cfg.precision
    training["precision_reason"] = model.precision_reason
    training["distribution"] = distribution
    if cfg.precision != "float32":  # evaluated, calibrated and exported in float32
        with stages("float32 copy of the model"):
            classifier = float32_twin(classifier)
    training["class_weights"] = None if weights is None else {classes[i]: w for i, w in weights.items()}
    training["steps_per_epoch"] = steps_per_epoch
    # === Refit === (every worker: the refit's fit is distributed as the split run's was)
    refit = None
    if cfg.refit == "all":
        refit = refit_all(
            cfg,
            checkpoint,
            len(classes),
            encoded,
            y,
            training["best_epoch"],
            weights,
            multi,
            stages,
            str(run.logs / "refit"),
        )
        training["refit"] = refit.record
    if not is_chief(distribution):
        log.info("%s: training done; the chief evaluates and exports the model", distribution["task"])
        return None, {"training": training}

    with run_folder(cfg.models_dir, checkpoint.name, created) as (work, final):
        run.exporting(work)
        with stages("write the folder"):
            if run.logs.is_dir():
                shutil.copytree(run.logs, work / "logs")
        forward = traced_forward(classifier)
        with stages("test evaluation"):
            test_logits = predict_in_order(forward, encoded["test"], cfg.batch_size)
        with stages("TF-IDF baseline"):
            baseline = baseline_metrics(splits.train.texts, y["train"], splits.test.texts, y["test"])

        # === Calibrate === (folds 1/T into the output layer before the export)
        calibration = None
        if cfg.calibration == "temperature" and multi:
            log.info("calibration: not for multi-label models (each label's threshold is tuned instead)")
        elif cfg.calibration == "temperature":
            calibration = calibrate_model(classifier, forward, encoded, y, test_logits, cfg.batch_size, stages)

        # === Evaluate === (the calibrated model, as it will serve)
        evaluation = evaluate_model(
            work, forward, model.preprocessor, cfg, splits, encoded, y, test_logits, baseline, calibration, stages
        )
        if refit is not None:  # exported: the refit, calibrated as the split model was
            calibrate_like(refit, None if calibration is None else calibration[0])
            classifier, forward = refit.classifier, traced_forward(refit.classifier)
            evaluation.metrics["refit"] = refit.record
        with stages("golden set"):
            write_golden_texts(work, forward, encoded["test"], y["test"], splits.test.texts, cfg.batch_size, multi)

        # === Export ===
        identity = {"short_id": short_id, "created": created}
        model_config = export_model(
            work, classifier, model.preprocessor, cfg, splits, checkpoint, identity, data, training, evaluation, stages
        )
        with stages("report.html"):
            try:
                write_report(work, model_config, evaluation.metrics, splits.test.texts, splits.label_sets("test"))
            except Exception as err:
                log.warning("report.html was not written: %s", err)
        timing = stages.record()
        log.debug("where the run's time went:\n%s", table(timing))
        evaluation.metrics["time"] = timing
        if RECORD_KEY in model_config:
            evaluation.metrics[RECORD_KEY] = model_config[RECORD_KEY]
        write_json_atomic(work / "metrics.json", evaluation.metrics)
    update_latest(cfg.models_dir, final, model_config)
    return final, model_config
