"""Test-split metrics: accuracy, macro-F1, per-class scores, a readable report and a confusion matrix."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in containers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402


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
        "n_test": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def baseline_metrics(train_texts, y_train, test_texts, y_test) -> dict:
    """Accuracy and macro-F1 of TF-IDF (word 1-2 grams) + logistic regression on the same split:
    the cheap model a fine-tuned transformer has to beat to be worth its cost."""
    baseline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    predicted = baseline.fit(train_texts, y_train).predict(test_texts)
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
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_evaluation(folder, y_true, y_pred, classes, baseline=None) -> dict:
    """Write metrics.json, classification_report.txt and confusion_matrix.png into `folder`.

    Args:
        baseline: optional output of `baseline_metrics`, stored beside the model's metrics.
    """
    folder = Path(folder)
    metrics = compute_metrics(y_true, y_pred, classes)
    if baseline is not None:
        metrics["baseline"] = baseline
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "classification_report.txt").write_text(text_report(y_true, y_pred, classes), encoding="utf-8")
    plot_confusion_matrix(metrics["confusion_matrix"], classes, folder / "confusion_matrix.png")
    return metrics
