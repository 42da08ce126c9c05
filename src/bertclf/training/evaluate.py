"""The evaluate stage and its parts: test-split metrics (accuracy, macro-F1, per-class scores, a
readable report and a confusion matrix), the TF-IDF baseline, abstaining and multi-label thresholds
chosen on the validation split; and re-scoring a saved model on the test split it was evaluated on."""

import dataclasses
import functools
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from bertclf.activations import sigmoid, softmax
from bertclf.config import TrainConfig
from bertclf.files import sha256_of
from bertclf.inference.abstain import ABSTAIN_KEY, at_threshold, threshold_for_precision
from bertclf.inference.batches import Encoded, predict_in_order
from bertclf.inference.multilabel import tune_thresholds
from bertclf.inference.pieces import MAX_WINDOWS, average_windows
from bertclf.registry import MODEL_CONFIG_FILE
from bertclf.training.data import DataError, Splits, load_splits

if TYPE_CHECKING:  # evaluation runs a predictor it is given; it never loads one itself
    from bertclf.inference.predictor import Predictor
    from bertclf.training.stages import Stages  # (imports Keras: `bertclf evaluate` needs no TensorFlow)

DATA_ROLES = ("data", "validation_data", "test_data")

log = logging.getLogger(__name__)


def compute_metrics(y_true, y_pred, classes) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support as plain JSON values.

    Args:
        y_true, y_pred: class indices.
        classes: class names in index order.
    """
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    per_class = {
        name: {key: float(report[name][key]) for key in ("precision", "recall", "f1-score", "support")}
        for name in classes
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "n_test": len(y_true),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def compute_multilabel_metrics(truth, predicted, classes) -> dict:
    """Multi-label scores: subset accuracy (every label of a text right; also as `accuracy`),
    micro- and macro-F1, and per-label precision/recall/F1/support, as plain JSON values."""
    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    report = classification_report(truth, predicted, target_names=classes, output_dict=True, zero_division=0)
    subset = float(accuracy_score(truth, predicted))
    return {
        "accuracy": subset,
        "subset_accuracy": subset,
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "n_test": len(truth),
        "per_label": {
            name: {key: float(report[name][key]) for key in ("precision", "recall", "f1-score", "support")}
            for name in classes
        },
    }


def baseline_metrics(train_texts, y_train, test_texts, y_test) -> dict:
    """Accuracy and macro-F1 of TF-IDF (word 1-2 grams) + logistic regression on the same split:
    the cheap model a fine-tuned transformer has to beat to be worth its cost. Multi-label (y a 0/1
    matrix): one logistic regression per label at probability 0.5, scored as the model is."""
    # sag reaches the optimum lbfgs reaches only with tol 1e-8 (same test scores on the real sets),
    # 20-30x faster than lbfgs's default stop on TF-IDF's sparse columns: 2.7 s against 78 s on the
    # 4,000-text debian set (131k columns), where lbfgs was 3% of a default run.
    classifier = LogisticRegression(max_iter=2000, C=10.0, solver="sag")
    multi = np.ndim(y_train) == 2
    baseline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        OneVsRestClassifier(classifier) if multi else classifier,
    )
    with warnings.catch_warnings():  # a label every (or no) training text has gets a constant predictor
        warnings.simplefilter("ignore", UserWarning)
        predicted = baseline.fit(train_texts, y_train).predict(test_texts)
    if multi:
        scores = compute_multilabel_metrics(y_test, predicted, [str(i) for i in range(np.shape(y_test)[1])])
        return {"model": "tfidf-1-2gram+logistic-regression-per-label"} | {
            key: scores[key] for key in ("accuracy", "subset_accuracy", "micro_f1", "macro_f1")
        }
    return {
        "model": "tfidf-1-2gram+logistic-regression",
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro", zero_division=0)),
    }


def text_report(y_true, y_pred, classes) -> str:
    """scikit-learn's classification report, for people."""
    return classification_report(
        y_true, y_pred, labels=list(range(len(classes))), target_names=classes, digits=3, zero_division=0
    )


def plot_confusion_matrix(matrix, classes, path, title="Confusion matrix (test split)"):
    """Save a confusion-matrix PNG with class names on both axes and counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in containers; set here, not at import
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    size = max(5.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > threshold else "black",
            )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(y_true, before, after, path, temperature, kept=True):
    """Save a reliability diagram PNG: accuracy against confidence per bin, before and after the
    fitted temperature (a calibrated model lies on the diagonal); `kept` says whether the export
    carries it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bertclf.training.calibration import ECE_BINS, expected_calibration_error, reliability

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    fitted = f"temperature {temperature:.2f}" + ("" if kept else " (not kept)")
    for probabilities, label, marker in ((before, "as trained", "o"), (after, fitted, "s")):
        table = reliability(probabilities, y_true)
        used = table["count"] > 0
        ece = expected_calibration_error(probabilities, y_true)
        ax.plot(table["confidence"][used], table["accuracy"][used], marker=marker, label=f"{label} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"confidence (top probability, {ECE_BINS} bins)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (test split, {len(y_true)} texts)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_evaluation(folder, y_true, logits, classes, baseline=None, calibration=None, extra=None, served=None) -> dict:
    """Write metrics.json, classification_report.txt and confusion_matrix.png into `folder` (and
    reliability_diagram.png when the model was calibrated).

    Args:
        logits: the model's test-split outputs before calibration (one row per text).
        baseline: optional output of `baseline_metrics`, stored beside the model's metrics.
        calibration: optional output of `calibration.calibrate`: (its record, calibrated probabilities).
        extra: more records for metrics.json (e.g. abstain: coverage and accuracy at the threshold).
        served: the probabilities the exported model serves, where they differ from the logits'
            (long_text window); the predictions, metrics and report are then theirs.
    """
    folder = Path(folder)
    logits = np.asarray(logits)
    y_pred = (logits if served is None else np.asarray(served)).argmax(axis=1)
    metrics = compute_metrics(y_true, y_pred, classes)
    if baseline is not None:
        metrics["baseline"] = baseline
    if calibration is not None:
        record = calibration[0]
        metrics["calibration"] = record
        fitted = record["fitted_temperature"]
        path = folder / "reliability_diagram.png"
        plot_reliability(y_true, softmax(logits), softmax(logits / fitted), path, fitted, record["kept"])
    metrics.update(extra or {})
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "classification_report.txt").write_text(text_report(y_true, y_pred, classes), encoding="utf-8")
    plot_confusion_matrix(metrics["confusion_matrix"], classes, folder / "confusion_matrix.png")
    return metrics


def plot_per_label(per_label, path, title="Per-label scores (test split)"):
    """Save a PNG of each label's precision, recall and F1 (multi-label models have no confusion matrix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_label)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 2), 4.5))
    for offset, key in zip((-0.27, 0.0, 0.27), ("precision", "recall", "f1-score"), strict=True):
        ax.bar(x + offset, [per_label[n][key] for n in names], width=0.27, label=key)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_multilabel_evaluation(folder, truth, probabilities, thresholds, classes, baseline=None, extra=None) -> dict:
    """Multi-label: metrics.json, classification_report.txt and per_label_scores.png, the texts'
    labels being every class at or above its threshold."""
    folder = Path(folder)
    predicted = (np.asarray(probabilities) >= np.asarray(thresholds)).astype(int)
    metrics = compute_multilabel_metrics(truth, predicted, classes)
    for name, threshold in zip(classes, thresholds, strict=True):
        metrics["per_label"][name]["threshold"] = round(float(threshold), 6)
    if baseline is not None:
        metrics["baseline"] = baseline
    metrics.update(extra or {})
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report = classification_report(
        np.asarray(truth, dtype=int), predicted, target_names=classes, digits=3, zero_division=0
    )
    (folder / "classification_report.txt").write_text(report, encoding="utf-8")
    plot_per_label(metrics["per_label"], folder / "per_label_scores.png")
    return metrics


# === Re-scoring a saved model ===
def _training_folder(model_folder: Path, models_dir: str) -> Path | None:
    """The folder training ran from, inferred from where the model folder is now: models_dir was
    given relative to it (e.g. `models`), and the folder is <models_dir>/trained/<name>."""
    typed = Path(models_dir)
    if typed.is_absolute() or ".." in typed.parts:
        return None
    root = model_folder.resolve().parent.parent
    return root.parents[len(typed.parts) - 1] if typed.parts else root


def find_training_files(
    model_config: dict[str, Any], model_folder: Path, moved: dict[str, str | None] | None = None
) -> dict[str, Path]:
    """The data files a model was trained on, found again: each must have the SHA-256 recorded at
    training. Looked for at the path `moved` gives for its role, else at the absolute path recorded
    at training, at the path as typed (from the current folder) and from the folder training ran in
    (a model trained in the dev container recorded /workspace/...).

    Raises:
        DataError: a file is missing or has changed since training; the message says where it looked.
    """
    recorded = model_config.get("data") or {}
    hyperparameters = model_config.get("hyperparameters") or {}
    moved = moved or {}
    origin = _training_folder(model_folder, str(hyperparameters.get("models_dir", "models")))
    found = {}
    for role in DATA_ROLES:
        entry = recorded.get(role)
        if not hyperparameters.get(role):
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise DataError(
                f"{model_folder / MODEL_CONFIG_FILE} does not record the {role} file's SHA-256; "
                "the test split cannot be rebuilt"
            )
        typed = Path(str(entry.get("given") or hyperparameters[role]))
        if moved.get(role):
            candidates = [Path(str(moved[role]))]
        else:
            candidates = [Path(str(entry.get("file", typed))), typed]
            if origin is not None and not typed.is_absolute():
                candidates.append(origin / typed)
        candidates = list(dict.fromkeys(candidates))
        existing = [path for path in candidates if path.is_file()]
        match = next((path for path in existing if sha256_of(path) == entry["sha256"]), None)
        if match is not None:
            found[role] = match
            continue
        option = f"--{role} FILE"
        if existing:
            raise DataError(
                f"{', '.join(map(str, existing))} changed since the model was trained (SHA-256 differs): "
                f"its test split is not the one the model saw. Pass the original file with {option}."
            )
        raise DataError(
            f"the model's {role} file is not at {' or '.join(map(str, candidates))}; "
            f"pass it with {option} (it must be the file the model was trained on)."
        )
    return found


def saved_splits(model_config: dict[str, Any], folder: Path, moved: dict[str, str | None] | None = None) -> Splits:
    """The splits a saved model was trained and evaluated on: the same files (find_training_files),
    re-split with the same settings and seed.

    Raises:
        DataError: the training data is missing or has changed since training.
    """
    hyperparameters = model_config.get("hyperparameters") or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in hyperparameters.items() if k in known}
    files = find_training_files(model_config, folder, moved)
    settings.update({role: os.fspath(path) for role, path in files.items()})
    # Feedback joins the training split only, after the split: the test split is the same without it,
    # and the store may be gone or have grown since the run.
    settings["feedback"] = False
    return load_splits(TrainConfig(**settings))


def evaluate_saved_model(predictor: "Predictor", moved: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Metrics of `predictor` on the test split its model was evaluated on at the end of training
    (the same files, found by find_training_files, re-split with the same seed), e.g. to check int8
    against fp32.

    Raises:
        DataError: the training data is missing or has changed since training.
    """
    splits = saved_splits(predictor.config, predictor.folder, moved)
    test = splits.test
    probabilities = predictor.predict_proba(list(test.texts))
    if predictor.thresholds is not None:  # multi-label
        from bertclf.inference.multilabel import multi_hot

        truth = multi_hot(splits.label_sets("test"), predictor.classes)
        return compute_multilabel_metrics(truth, probabilities >= predictor.thresholds, predictor.classes)
    index = {label: i for i, label in enumerate(predictor.classes)}
    y_true = np.array([index[label] for label in test.labels])
    return compute_metrics(y_true, probabilities.argmax(axis=1), predictor.classes)


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


@dataclasses.dataclass
class Evaluation:
    """What the evaluate stage found, for the export."""

    metrics: dict  # metrics.json (the stage table is added at the end)
    abstaining: dict | None  # single-label: the min_confidence record, if asked for
    thresholds: np.ndarray | None  # multi-label: each label's threshold


def evaluate_model(
    folder: Path,
    forward,
    preprocessor,
    cfg: TrainConfig,
    splits: Splits,
    encoded: dict,
    y: dict,
    test_logits: np.ndarray,
    baseline: dict,
    calibration: tuple[dict, np.ndarray] | None,
    stages: "Stages",
) -> Evaluation:
    """The evaluate stage: the exported (calibrated) model's scores on the test split as it will
    serve them (long texts as windows with long_text window), multi-label thresholds or the abstain
    threshold chosen on the validation split; writes metrics.json, the report and plots into `folder`.

    Args:
        forward: the final model's traced forward pass (features -> logits).
        test_logits: the test split's logits before calibration.
    """
    from bertclf.training.pipeline import encode_windows  # TensorFlow: a training run has it loaded already

    classes, multi = splits.classes, splits.multi_label
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
        abstaining, thresholds = None, None
        if multi:
            thresholds = tune_thresholds(probabilities("validation"), y["validation"])
            log.info(
                "multi-label thresholds (best F1 on the validation split): %s",
                ", ".join(f"{name} {t:.2f}" for name, t in zip(classes, thresholds, strict=True)),
            )
            test_probabilities = probabilities("test")
            if cfg.long_text == "window":
                truncated = compute_multilabel_metrics(y["test"], sigmoid(test_logits) >= thresholds, classes)
                extra["long_text"] = long_text_record(served["test"], truncated)
            metrics = write_multilabel_evaluation(
                folder, y["test"], test_probabilities, thresholds, classes, baseline, extra
            )
        else:
            abstaining = abstain_record(cfg, probabilities, y)
            if abstaining:
                extra[ABSTAIN_KEY] = abstaining
            windowed = None
            if cfg.long_text == "window":
                windowed = probabilities("test")
                truncated = compute_metrics(y["test"], np.asarray(test_logits).argmax(axis=1), classes)
                extra["long_text"] = long_text_record(served["test"], truncated)
            metrics = write_evaluation(folder, y["test"], test_logits, classes, baseline, calibration, extra, windowed)
    return Evaluation(metrics, abstaining, thresholds)
