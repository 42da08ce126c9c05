"""A model folder as a batch-scoring callable for the engines users already run: Ray Data's
`map_batches` with a callable class, Spark's `predict_batch_udf`, or a plain loop.

    scorer = BatchScorer("models/trained/my-model", top_k=3)   # loads once (an actor, an executor)
    labelled = scorer(batch)                                  # a pandas/Arrow/dict batch, columns added

The columns added are those `predict --input` writes (labelfile.answers): prediction, probability
and, with top_k, label_1, score_1, ... A multi-label model answers a list of labels and their
probabilities; an abstaining one None below its threshold. ONNX Runtime gets as many threads as the
engine gave this process CPUs (a Ray actor's num_cpus, a Spark task's spark.task.cpus), else the
CPUs this process may run on: several scorers on one machine then share it instead of fighting.

With BERTCLF_SCORER_LOG=<file> every scorer appends one JSON line when it loads its model and one
per batch (pid, rows, start and end times) to that file: on a cluster, the check that each worker
loads the model once, not per batch (`make bench-label` reads it).

Serving install only: pandas and pyarrow are never imported here, a batch is recognised by shape.
"""

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.errors import ConfigError, DataError, RegistryError
from bertclf.inference.labelfile import added_columns, answers, pick_text_column
from bertclf.inference.predictor import Predictor
from bertclf.registry import MODEL_CONFIG_FILE


def engine_cpus() -> int:
    """The CPUs the engine running this process gave it: a Ray actor's or task's CPU resource, a
    Spark task's `spark.task.cpus`; else every CPU this process may run on."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            return max(1, int(cpus))
    pyspark = sys.modules.get("pyspark")
    if pyspark is not None:
        context = pyspark.TaskContext.get()
        if context is not None:
            return max(1, int(context.cpus()))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def model_folder(model_dir: str | os.PathLike) -> Path:
    """`model_dir` checked to be a trained model folder (the message `predict` gives otherwise)."""
    folder = Path(model_dir).expanduser().resolve()
    if not (folder / MODEL_CONFIG_FILE).is_file():
        raise RegistryError(
            f"no trained model folder {str(model_dir)!r} (looked for {MODEL_CONFIG_FILE} in {folder}); "
            "give the path of a folder `make train` exported (models/trained/<name>)"
        )
    return folder


class BatchScorer:
    """Loads a model folder once and labels batches of texts with it.

    Args:
        model_dir: a folder `make train` exported (its serving graph: no TensorFlow needed).
        text_column: the column to classify (default: the one the model was trained on, else the
            first of the usual names: text, description, ...).
        top_k: also add the K most probable labels and their scores.
        threads: ONNX Runtime threads (default: engine_cpus()).
        precision, min_confidence, max_seq_len, long_text: as `predict` takes them (default: what
            the model folder says; precision auto).
        batch_size: most texts per forward pass.

    Raises:
        RegistryError: not a model folder, or one we refuse (see Predictor).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        text_column: str | None = None,
        top_k: int = 0,
        threads: int | None = None,
        precision: str = "auto",
        min_confidence: float | None = None,
        max_seq_len: int | None = None,
        long_text: str | None = None,
        batch_size: int = 64,
    ):
        self.trace = os.environ.get("BERTCLF_SCORER_LOG")
        started = time.time()
        self.predictor = Predictor(
            model_folder(model_dir),
            batch_size=batch_size,
            precision=precision,
            threads=threads or engine_cpus(),
            min_confidence=min_confidence,
            max_seq_len=max_seq_len,
            long_text=long_text,
        )
        if not 0 <= top_k <= len(self.predictor.classes):
            raise ConfigError(
                f"top_k must be 0-{len(self.predictor.classes)} (the model has {len(self.predictor.classes)} labels)"
            )
        self.top_k = top_k
        self.text_column = text_column
        self.trained_column = self.predictor.config.get("hyperparameters", {}).get("text_column")
        self.columns = added_columns(top_k)  # what a batch gains, in order
        self.multi_label = self.predictor.multi_label
        self.batches = 0  # batches scored by this instance
        self._log(event="load", model=self.predictor.name, start=started, end=time.time())

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes)

    def column_in(self, columns: Sequence[str], where: str = "the batch") -> str:
        """The text column among `columns` (see labelfile.pick_text_column)."""
        return pick_text_column(list(columns), self.text_column, self.trained_column, Path(where))

    def score(self, texts: Sequence[Any], column: str | None = None) -> list[dict]:
        """The added columns for each text (of `column`, for the message), as `predict --input`
        computes them.

        Raises:
            DataError: a text is missing (None/NaN) or not a string.
        """
        checked = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                named = repr(column) if column else "text"
                raise DataError(
                    f"row {i + 1} of the batch has no {named} (got {_shown(text)}); every row needs its text"
                )
            checked.append(text)
        started = time.time()
        added = answers(self.predictor, checked, self.top_k)
        self.batches += 1
        self._log(event="batch", rows=len(checked), start=started, end=time.time())
        return added

    def _log(self, **entry: Any) -> None:
        if self.trace:  # one short write in append mode: lines of several processes do not mix
            with open(self.trace, "a", encoding="utf-8") as file:
                file.write(json.dumps({"pid": os.getpid(), **entry}) + "\n")

    def __call__(self, batch: Any) -> Any:
        """`batch` with the added columns: a pandas DataFrame, a pyarrow Table, or a dict of columns
        (Ray's numpy batches) comes back as the same kind; a list of texts gives a list of dicts."""
        if isinstance(batch, dict):
            column = self.column_in(list(batch))
            rows = self.score(_texts(batch[column]), column)
            return {**batch, **{name: _array([row.get(name) for row in rows]) for name in self.columns}}
        if hasattr(batch, "column_names") and hasattr(batch, "append_column"):  # pyarrow.Table
            import pyarrow as pa

            column = self.column_in(batch.column_names)
            rows = self.score(batch.column(column).to_pylist(), column)
            for name in self.columns:
                batch = batch.append_column(name, pa.array([row.get(name) for row in rows]))
            return batch
        if hasattr(batch, "columns") and hasattr(batch, "assign"):  # pandas.DataFrame
            column = self.column_in([str(c) for c in batch.columns])
            rows = self.score(batch[column].tolist(), column)
            return batch.assign(**{name: [row.get(name) for row in rows] for name in self.columns})
        if isinstance(batch, (list, tuple)):
            return self.score(batch)
        raise TypeError(
            f"a batch is a pandas DataFrame, a pyarrow Table, a dict of columns or a list, not {type(batch)}"
        )


def _texts(column: Any) -> list:
    return column.tolist() if hasattr(column, "tolist") else list(column)


def _array(values: list) -> np.ndarray:
    """A column for a dict batch: numbers as a float array, anything else (labels, None, lists) as objects."""
    if values and all(isinstance(v, float) for v in values):
        return np.asarray(values, dtype=np.float64)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
