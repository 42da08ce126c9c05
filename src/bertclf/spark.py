"""Label a Spark DataFrame's texts with a model folder: a `predict_batch_udf` for `withColumn`.

    from bertclf.spark import udf

    label = udf("/models/trained/20261206-120000_bert_en_uncased", top_k=3)
    df.withColumn("label", label("text")).select("*", "label.*").drop("label")

Each Python worker of an executor loads the model once (Spark's model cache behind
`predict_batch_udf`: keep `spark.python.worker.reuse` on, its default) and scores batches of
`batch_size` rows with inference.scorer.BatchScorer on `spark.task.cpus` ONNX Runtime threads.
The struct has the columns `predict --input` writes: prediction (string; a multi-label model: an
array of strings), probability (double; multi-label: an array), and with top_k label_1, score_1, ...
A null text fails the task with the message `predict` gives for a row without its text.

The model folder must be readable at the same path on every executor (a shared or read-only
mounted volume, or baked into the image); `pip install 'bertclf[spark]'` on the driver and the
executors; Spark itself needs Java 17 (`make install-spark` installs Debian's openjdk-17-jre-headless
where it is missing).
"""

import os
from typing import Any

import numpy as np

from bertclf.errors import ConfigError, RegistryError
from bertclf.files import read_json_object
from bertclf.inference.scorer import BatchScorer, model_folder
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, load_labels

INSTALL = "pip install 'bertclf[spark]'"


def schema(top_k: int, multi_label: bool):
    """The struct the UDF returns (pyspark.sql.types.StructType)."""
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    fields = [
        StructField("prediction", ArrayType(StringType()) if multi_label else StringType(), True),
        StructField("probability", ArrayType(DoubleType()) if multi_label else DoubleType(), True),
    ]
    for rank in range(1, top_k + 1):
        fields += [StructField(f"label_{rank}", StringType(), True), StructField(f"score_{rank}", DoubleType(), True)]
    return StructType(fields)


def udf(
    model_dir: str | os.PathLike,
    top_k: int = 0,
    batch_size: int = 256,
    threads: int | None = None,
    precision: str = "auto",
    min_confidence: float | None = None,
    max_seq_len: int | None = None,
    long_text: str | None = None,
):
    """A Spark UDF of one text column that labels it with the model in `model_dir`.

    Args:
        model_dir: a folder `make train` exported, at this path on the driver and every executor.
        top_k: also return the K most probable labels and their scores.
        batch_size: rows per call of the model.
        threads: ONNX Runtime threads per Python worker (default: spark.task.cpus).
        precision, min_confidence, max_seq_len, long_text: as `predict` takes them.

    Raises:
        RegistryError: `model_dir` is not a model folder (checked here, on the driver).
        ConfigError: pyspark is missing, or top_k does not fit the model.
    """
    try:
        from pyspark.ml.functions import predict_batch_udf
    except ImportError:
        raise ConfigError(f"bertclf.spark needs pyspark with pandas and pyarrow: {INSTALL}") from None
    folder = model_folder(model_dir)
    config = read_json_object(folder / MODEL_CONFIG_FILE, RegistryError)
    classes = load_labels(folder / LABELS_FILE)
    multi_label = bool(config.get("multi_label"))
    if not 0 <= top_k <= len(classes):
        raise ConfigError(f"top_k must be 0-{len(classes)} (the model has {len(classes)} labels)")
    settings: dict[str, Any] = {
        "model_dir": str(folder),
        "top_k": top_k,
        "threads": threads,
        "precision": precision,
        "min_confidence": min_confidence,
        "max_seq_len": max_seq_len,
        "long_text": long_text,
    }

    def make_predict_fn():  # runs once per Python worker (Spark caches what it returns)
        scorer = BatchScorer(**settings)
        columns = scorer.columns

        def predict(texts: np.ndarray):
            rows = scorer.score(texts.tolist())
            if scorer.multi_label:  # rows of dicts: Spark takes a one-dimensional array per list cell
                return [{name: _cell(name, row.get(name)) for name in columns} for row in rows]
            return {name: _column([row.get(name) for row in rows]) for name in columns}

        return predict

    return predict_batch_udf(make_predict_fn, return_type=schema(top_k, multi_label), batch_size=batch_size)


def _cell(name: str, value: Any) -> Any:
    """A multi-label row's cell: its lists as one-dimensional arrays (labels as strings, even when empty)."""
    if not isinstance(value, list):
        return value
    return np.asarray(value, dtype=object if name == "prediction" else np.float64)


def _column(values: list) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column
