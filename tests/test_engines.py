"""Labelling on the engines users already run: the batch scorer they call (every batch kind Ray and
Spark hand it), `predict --engine ray` on a local Ray and the Spark UDF on local[2], each against
`predict --input` on the same file: same labels, probabilities within 1e-5, every column kept, no
row lost or duplicated, and the same messages for a broken row or a missing model folder.

The Ray and Spark runs are slow tests (`make test-slow`, which installs the `ray` and `spark`
extras): each engine's start-up is 10-20 s and their wheels are ~500 MB, which `make test` (12 min
on 2 cores) does not carry. The scorer and the option checks run in `make test`.
"""

import csv
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bertclf.config import LabelConfig
from bertclf.errors import ConfigError, DataError, RegistryError
from bertclf.inference.predictor import Predictor
from bertclf.inference.scorer import BatchScorer, engine_cpus
from conftest import make_texts

ROWS = 10_000


def write_rows(path: Path, n: int = ROWS, broken_line: int | None = None) -> Path:
    """n rows: an id, a text (every 97th spans two lines), a zip code a type guesser would turn into
    a number, and an empty note; with `broken_line`, that row gets a field too many."""
    texts, _ = make_texts(n // 3 + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "zip", "note"])
        for i, text in enumerate(texts[:n]):
            row = [str(i), text + ("\nsecond line" if i % 97 == 0 else ""), f"{i:05d}", ""]
            writer.writerow([*row, "extra"] if broken_line == i + 2 else row)
    return path


def read_csv_rows(paths) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    return rows


def predict_input(models: Path, source: Path, target: Path, *options: str) -> list[dict]:
    """`predict --input` on `source`: the reference every engine must equal."""
    command = [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), *options]
    result = subprocess.run(
        [*command, "--input", str(source), "--output", str(target)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return read_csv_rows([target])


def assert_same_rows(got: list[dict], expected: list[dict], numeric=("probability", "score_1", "score_2")):
    assert len(got) == len(expected)
    assert sorted(int(row["id"]) for row in got) == list(range(len(expected)))  # none lost or twice
    by_id = {row["id"]: row for row in got}
    for want in expected:
        row = by_id[want["id"]]
        assert list(row) == list(want)  # every input column, in order, then the answers
        for key, value in want.items():
            if key in numeric:
                assert float(row[key]) == pytest.approx(float(value), abs=1e-5), (key, want["id"])
            else:
                assert row[key] == value, (key, want["id"])


# === The batch scorer: every batch kind the engines hand it ===


def test_the_scorer_adds_predict_inputs_columns_to_every_batch_kind(trained_models):
    pd = pytest.importorskip("pandas")
    _, folder = trained_models
    scorer = BatchScorer(folder, top_k=2, threads=1)
    texts = ["apple banana lemon", "hammer saw", "cat dog", ""]
    labels, probabilities = Predictor(folder).predict(texts)
    assert scorer.columns == ["prediction", "probability", "label_1", "score_1", "label_2", "score_2"]

    frame = scorer(pd.DataFrame({"id": [1, 2, 3, 4], "text": texts}))
    assert list(frame.columns) == ["id", "text", *scorer.columns]
    assert frame["prediction"].tolist() == labels
    assert frame["probability"].tolist() == pytest.approx(probabilities, abs=1e-5)
    assert (frame["label_1"] == frame["prediction"]).all()

    numpy_batch = scorer({"id": np.arange(4), "text": np.array(texts, dtype=object)})  # Ray's default batches
    assert numpy_batch["prediction"].tolist() == labels and numpy_batch["probability"].dtype == np.float64
    assert numpy_batch["id"].tolist() == [0, 1, 2, 3]

    rows = scorer(texts)
    assert [row["prediction"] for row in rows] == labels and set(rows[0]) == set(scorer.columns)

    pa = pytest.importorskip("pyarrow")
    table = scorer(pa.table({"text": texts, "n": [1, 2, 3, 4]}))
    assert table.column_names == ["text", "n", *scorer.columns]
    assert table.column("prediction").to_pylist() == labels
    assert scorer.batches == 4  # one model, loaded once, for every batch


def test_the_scorer_names_the_column_and_the_row_without_text(trained_models):
    _, folder = trained_models
    scorer = BatchScorer(folder, threads=1)
    with pytest.raises(DataError, match=r"row 2 of the batch has no 'text'.*every row needs its text"):
        scorer({"text": np.array(["fine", None], dtype=object)})
    with pytest.raises(ConfigError, match="no column named 'body'"):
        BatchScorer(folder, text_column="body", threads=1)({"text": np.array(["x"], dtype=object)})
    with pytest.raises(ConfigError, match="cannot tell which column holds the text"):
        scorer({"words": np.array(["x"], dtype=object)})
    with pytest.raises(ConfigError, match="top_k must be 0-3"):
        BatchScorer(folder, top_k=4)
    with pytest.raises(TypeError, match="a batch is a pandas DataFrame"):
        scorer("just a string")


def test_a_missing_model_folder_fails_as_predict_says_it(tmp_path):
    with pytest.raises(RegistryError, match=r"no trained model folder '.*nope' \(looked for model_config.json"):
        BatchScorer(tmp_path / "nope")


def test_the_scorer_takes_as_many_threads_as_the_process_may_use(trained_models):
    assert engine_cpus() == len(os.sched_getaffinity(0))
    _, folder = trained_models
    assert BatchScorer(folder).predictor.threads == engine_cpus()


def test_the_threads_are_the_cpus_ray_or_spark_gave_the_process(monkeypatch):
    from types import SimpleNamespace

    context = SimpleNamespace(get_assigned_resources=lambda: {"CPU": 3.0, "memory": 1e9})
    ray = SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: context)
    monkeypatch.setitem(sys.modules, "ray", ray)
    assert engine_cpus() == 3  # an actor with num_cpus=3
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    task = SimpleNamespace(cpus=lambda: 2)
    monkeypatch.setitem(sys.modules, "pyspark", SimpleNamespace(TaskContext=SimpleNamespace(get=lambda: task)))
    assert engine_cpus() == 2  # a Spark task with spark.task.cpus=2
    monkeypatch.setitem(sys.modules, "pyspark", SimpleNamespace(TaskContext=SimpleNamespace(get=lambda: None)))
    assert engine_cpus() == len(os.sched_getaffinity(0))  # the driver, or no engine at all


def test_ray_options_go_together():
    with pytest.raises(ValueError, match="--engine ray labels files: give --input and --output"):
        LabelConfig(engine="ray")
    with pytest.raises(ValueError, match="--address and --workers go with --engine ray"):
        LabelConfig(input="a.csv", output="b.csv", workers=2)
    with pytest.raises(ValueError, match="engine must be one of auto, onnx, tensorflow, ray"):
        LabelConfig(engine="spark")
    assert LabelConfig(engine="ray", input="in", output="out", workers=2, address="auto").workers == 2


def test_ray_input_names_files_folders_and_globs_of_one_format(tmp_path):
    from bertclf.ray import input_files

    (tmp_path / "in" / "deeper").mkdir(parents=True)
    for name in ("b.csv", "a.csv", "deeper/c.csv", "notes.txt"):
        (tmp_path / "in" / name).write_text("text\nx\n")
    assert [p.name for p in input_files(str(tmp_path / "in"))] == ["a.csv", "b.csv", "c.csv"]
    assert [p.name for p in input_files(str(tmp_path / "in" / "*.csv"))] == ["a.csv", "b.csv"]
    assert [p.name for p in input_files(str(tmp_path / "in" / "a.csv"))] == ["a.csv"]
    with pytest.raises(ConfigError, match="no such file or folder"):
        input_files(str(tmp_path / "nothing*.csv"))
    with pytest.raises(ConfigError, match=r"name it \.csv, \.tsv, \.jsonl or \.parquet"):
        input_files(str(tmp_path / "in" / "*.txt"))
    (tmp_path / "in" / "d.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ConfigError, match="mixes formats"):
        input_files(str(tmp_path / "in"))


def test_ray_csv_cells_are_written_as_predict_input_writes_them():
    from bertclf.ray import _Labeller

    labeller = object.__new__(_Labeller)  # the cell rules only: no model
    labeller.separator, labeller.escape = ";", True
    assert labeller._cell(np.array(["bug", "ui"], dtype=object)) == "bug;ui"  # a multi-label answer
    assert labeller._cell(["bug"]) == "bug" and labeller._cell([]) == ""
    assert labeller._cell(np.float64(0.25)) == "0.25" and labeller._cell(0.5) == "0.5"
    assert labeller._cell(None) == "" and labeller._cell(float("nan")) == ""  # abstained, or an empty cell
    assert labeller._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"  # spreadsheets never run it
    labeller.escape = False
    assert labeller._cell("=1") == "=1"


# === Ray: a local Ray, 2 CPUs ===


@pytest.mark.slow
def test_ray_labels_10000_rows_as_predict_input_does(tmp_path, trained_models):
    pytest.importorskip("ray", reason="make test-slow installs the ray extra")
    models, _ = trained_models
    source = write_rows(tmp_path / "in" / "rows.csv")
    expected = predict_input(models, source, tmp_path / "single.csv", "--top_k", "2")
    command = [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "--engine", "ray"]
    started = time.perf_counter()
    result = subprocess.run(
        [
            *command,
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--top_k",
            "2",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"labelled {ROWS:,} rows (column 'text')" in result.stderr and "2 Ray workers" in result.stderr, (
        result.stderr
    )
    parts = sorted(glob.glob(str(tmp_path / "out" / "part-*.csv")))
    assert len(parts) >= 2, parts  # one file per block: a single input file spread over both workers
    assert_same_rows(read_csv_rows(parts), expected)
    print(f"ray: {ROWS} rows in {time.perf_counter() - started:.1f} s with start-up")

    # A broken row: predict --input's message (file and line); a missing model: its message; no output left.
    broken = write_rows(tmp_path / "bad" / "rows.csv", n=2000, broken_line=1500)
    reference = subprocess.run(
        [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "--input", str(broken), "--output",
         str(tmp_path / "bad.csv")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    message = reference.stderr.strip().splitlines()[-1]
    assert reference.returncode == 2 and "fields where the header has 4" in message, reference.stderr
    failed = subprocess.run(
        [*command, "--input", str(broken.parent), "--output", str(tmp_path / "out2")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert failed.returncode == reference.returncode and failed.stderr.strip().splitlines()[-1] == message, (
        failed.stderr
    )
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2.partial-*"))
    missing = subprocess.run(
        [*command, "--model_dir", str(models / "trained" / "nope"), "--input", str(source), "--output",
         str(tmp_path / "out3")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert missing.returncode == 2 and "no trained model folder" in missing.stderr, missing.stderr
    taken = subprocess.run(
        [*command, "--input", str(source), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert taken.returncode == 2 and "is not an empty folder" in taken.stderr


@pytest.mark.slow
def test_ray_keeps_jsonl_values_and_multi_label_lists(tmp_path, multilabel_run):
    pytest.importorskip("ray", reason="make test-slow installs the ray extra")
    from bertclf.ray import label_files

    _, folder, _ = multilabel_run
    texts = ["apple", "cat apple", "hammer", "", "naïve ünïcode 🚀"]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"text": t, "meta": {"n": i}, "tags": [i]}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        ),
        encoding="utf-8",
    )
    done = label_files(folder, str(source), tmp_path / "out", workers=1)
    rows = [json.loads(line) for path in sorted((tmp_path / "out").iterdir()) for line in path.read_text().splitlines()]
    labels, probabilities = Predictor(folder).predict(texts)
    assert done["rows"] == len(texts) and [row["text"] for row in rows] == texts
    assert [row["meta"] for row in rows] == [{"n": i} for i in range(5)] and rows[1]["tags"] == [1]
    assert [row["prediction"] for row in rows] == labels
    for row, expected in zip(rows, probabilities, strict=True):
        assert row["probability"] == pytest.approx(expected, abs=1e-5)


# === Spark: local[2] ===


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="make test-slow installs the spark extra")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the executors' Python: this one, with bertclf
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("bertclf tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_udf_labels_10000_rows_as_predict_input_does(tmp_path, trained_models, spark):
    from bertclf.spark import udf

    models, folder = trained_models
    source = write_rows(tmp_path / "rows.csv")
    expected = predict_input(models, source, tmp_path / "single.csv", "--top_k", "2")
    frame = spark.read.csv(str(source), header=True, multiLine=True, escape='"').repartition(4)
    label = udf(folder, top_k=2, batch_size=512)
    labelled = frame.withColumn("answer", label("text")).select("*", "answer.*").drop("answer")
    got = [
        {key: ("" if value is None else str(value)) for key, value in row.asDict().items()}
        for row in labelled.collect()
    ]
    for row in got:  # Spark prints doubles its own way: compare them as numbers
        for key in ("probability", "score_1", "score_2"):
            row[key] = str(float(row[key]))
    assert_same_rows(got, expected)

    with pytest.raises(RegistryError, match="no trained model folder"):
        udf(models / "trained" / "nope")
    nulls = spark.createDataFrame([("fine",), (None,)], "text string")
    with pytest.raises(Exception, match=r"has no text.*every row needs its text"):
        nulls.withColumn("answer", udf(folder)("text")).collect()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_udf_returns_multi_label_arrays(multilabel_run, spark):
    from bertclf.spark import udf

    _, folder, _ = multilabel_run
    texts = ["apple", "cat apple", "hammer", ""]
    frame = spark.createDataFrame([(t,) for t in texts], "text string")
    rows = frame.withColumn("answer", udf(folder)("text")).select("text", "answer.*").collect()
    labels, probabilities = Predictor(folder).predict(texts)
    assert [row["prediction"] for row in rows] == labels
    for row, expected in zip(rows, probabilities, strict=True):
        assert row["probability"] == pytest.approx(expected, abs=1e-5)
