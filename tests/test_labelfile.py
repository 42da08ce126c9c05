"""Labelling a whole file: every input column kept, the model's answers added in row order across
chunks, CSV/TSV/JSONL in and out, and no half file on bad input or an interrupted run."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from bertclf.errors import ConfigError, DataError
from bertclf.inference.labelfile import label_file
from bertclf.inference.predictor import Predictor


class Keyword:
    """A fake model: a text's label is the first class it names; it can fail on a text."""

    classes = ("bug", "docs", "ui")

    def __init__(self, config=None, fail_on=None, thresholds=None):
        self.config = config or {"hyperparameters": {"text_column": "body"}}
        self.fail_on = fail_on
        self.thresholds = thresholds
        self.calls = 0

    def predict_proba(self, texts):
        self.calls += 1
        rows = np.full((len(texts), 3), 0.1, np.float32)
        for i, text in enumerate(texts):
            if text == self.fail_on:
                raise KeyboardInterrupt
            hit = next((k for k, c in enumerate(self.classes) if c in text), 0)
            rows[i, hit] = 0.8
        return rows

    def decide(self, rows):
        if self.thresholds:
            labels = [[c for c, p in zip(self.classes, row, strict=True) if p >= 0.5] for row in rows]
            return labels, [[float(p) for p in row if p >= 0.5] for row in rows]
        return [self.classes[i] for i in rows.argmax(axis=1)], [float(r.max()) for r in rows]


ROWS = [
    {"id": str(i), "body": text, "note": note}
    for i, (text, note) in enumerate(
        [
            ("the ui freezes", "has, a comma"),
            ("docs typo", 'has "quotes"'),
            ("crash: bug in save", "two\nlines"),
            ("", "empty text"),
            ("naïve ünïcode ui 🚀", "emoji"),
        ]
        * 3
    )
]


def write(path, rows=ROWS, delimiter=","):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


@pytest.mark.parametrize(
    "source_name, target_name", [("in.csv", "out.csv"), ("in.tsv", "out.jsonl"), ("in.jsonl", "out.tsv")]
)
def test_every_column_is_kept_and_answers_follow_the_rows_across_chunks(tmp_path, source_name, target_name):
    source = write(tmp_path / source_name, delimiter="\t" if source_name.endswith(".tsv") else ",")
    model = Keyword()
    summary = label_file(model, source, tmp_path / target_name, top_k=2, chunk_rows=4)
    assert summary["rows"] == len(ROWS) and summary["text_column"] == "body", "the column the model was trained on"
    assert model.calls == 4, "15 rows in chunks of 4"
    out = read(tmp_path / target_name)
    assert [row["id"] for row in out] == [row["id"] for row in ROWS]
    for original, labelled in zip(ROWS, out, strict=True):
        assert {k: labelled[k] for k in original} == original, "input columns unchanged, quotes, commas and newlines"
        expected = next((c for c in Keyword.classes if c in original["body"]), "bug")
        assert labelled["prediction"] == expected and labelled["label_1"] == expected
        assert float(labelled["probability"]) == pytest.approx(0.8) and float(labelled["score_2"]) == pytest.approx(0.1)
    assert list(out[0])[-6:] == ["prediction", "probability", "label_1", "score_1", "label_2", "score_2"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_jsonl_keeps_nested_values_and_multi_label_lists(tmp_path):
    rows = [{"text": "ui bug", "meta": {"n": 1, "tags": ["a"]}}, {"text": "docs", "meta": None}]
    source = write(tmp_path / "in.jsonl", rows)
    model = Keyword(config={"multi_label": {"separator": ";"}}, thresholds=True)
    label_file(model, source, tmp_path / "out.jsonl")
    out = read(tmp_path / "out.jsonl")
    assert out[0]["meta"] == {"n": 1, "tags": ["a"]} and out[1]["meta"] is None
    assert out[0]["prediction"] == ["bug"] and out[1]["prediction"] == ["docs"]
    label_file(model, source, tmp_path / "out.csv")  # in a CSV cell: the model's separator
    assert read(tmp_path / "out.csv")[0]["prediction"] == "bug" and read(tmp_path / "out.csv")[0]["meta"] == (
        '{"n": 1, "tags": ["a"]}'
    )


def test_the_output_cannot_be_the_input(tmp_path):
    source = write(tmp_path / "in.csv")
    with pytest.raises(ConfigError, match="is the input file"):
        label_file(Keyword(), source, tmp_path / "sub" / ".." / "in.csv")
    (tmp_path / "link.csv").symlink_to(source)
    with pytest.raises(ConfigError, match="is the input file"):
        label_file(Keyword(), source, tmp_path / "link.csv")
    assert read(source) == ROWS


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('id,body\n1,fine\n2,"never closed\n' + "x" * 100 + "\n", None),  # fails at the end: a quote never closes
        ("id,body\n1,fine\n2,too,many\n", "line 3: 3 fields where the header has 2"),
        ("id,body,id\n1,a,b\n", "names a column twice"),
        ("", "is empty"),
    ],
)
def test_a_broken_csv_names_the_line_and_leaves_no_file(tmp_path, content, fragment):
    source = tmp_path / "in.csv"
    source.write_text(content)
    target = tmp_path / "out.csv"
    target.write_text("an older output\n")
    try:
        label_file(Keyword(), source, target, text_column="body")
    except (DataError, ConfigError) as err:
        assert fragment is None or fragment in str(err)
    else:
        assert fragment is None, "a quote that never closes reads as one long last field"
    if fragment is not None:
        assert target.read_text() == "an older output\n", "an older output is left as it was"
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_jsonl_and_missing_text_name_the_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a"}\n\n{"text": "b"\n')
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        label_file(Keyword(), source, tmp_path / "out.jsonl")
    source.write_text('{"text": "a"}\n{"other": "b"}\n')
    with pytest.raises(DataError, match="line 2 has no 'text'"):
        label_file(Keyword(), source, tmp_path / "out.jsonl")
    source.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        label_file(Keyword(), source, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists() and not list(tmp_path.glob(".*.tmp"))


def test_an_interrupted_run_leaves_no_half_file(tmp_path):
    source = write(tmp_path / "in.csv")
    target = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        label_file(Keyword(fail_on="docs typo"), source, target, chunk_rows=1)
    assert not target.exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(text_column="title"), "no column named 'title'"),
        (dict(top_k=4), "top_k must be 0-3"),
    ],
)
def test_options_that_do_not_fit_the_file_are_clear_errors(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        label_file(Keyword(), write(tmp_path / "in.csv"), tmp_path / "out.csv", **kwargs)


def test_a_file_labelled_before_is_not_silently_mixed(tmp_path):
    source = write(tmp_path / "in.csv")
    label_file(Keyword(), source, tmp_path / "once.csv")
    with pytest.raises(ConfigError, match="already has the column"):
        label_file(Keyword(), tmp_path / "once.csv", tmp_path / "twice.csv")
    with pytest.raises(ConfigError, match=r"\.csv, \.tsv or \.jsonl"):
        label_file(Keyword(), source, tmp_path / "out.xlsx")


def test_the_cli_labels_a_file_with_a_real_model_as_predict_does(tmp_path, trained_models):
    models, folder = trained_models
    texts = ["apple banana lemon", "hammer saw", "cat dog", "the big zebra whale", "", "x" * 3000]
    source = write(tmp_path / "in.csv", [{"text": t, "n": str(i)} for i, t in enumerate(texts)])
    target = tmp_path / "labelled.csv"
    command = [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models)]
    result = subprocess.run(
        [*command, "--input", str(source), "--output", str(target), "--top_k", "3", "--chunk_rows", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "labelled 6 rows (column 'text')" in result.stderr and "rows/s" in result.stderr
    out = read(target)
    labels, probabilities = Predictor(folder).predict(texts)
    assert [row["prediction"] for row in out] == labels and [row["n"] for row in out] == [str(i) for i in range(6)]
    assert [float(row["probability"]) for row in out] == pytest.approx(probabilities, abs=1e-5)
    refused = subprocess.run([*command, "--input", str(source)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--input and --output go together" in refused.stderr


def test_cells_a_spreadsheet_would_run_are_escaped_unless_asked_not_to(tmp_path):
    rows = [{"text": '=HYPERLINK("http://evil","x") bug', "note": "+1"}, {"text": "docs", "note": "'quoted"}]
    source = write(tmp_path / "in.csv", rows)
    label_file(Keyword(), source, tmp_path / "safe.csv")
    safe = read(tmp_path / "safe.csv")
    assert safe[0]["text"] == "'" + rows[0]["text"] and safe[0]["note"] == "'+1" and safe[1]["note"] == "''quoted"
    assert safe[1]["text"] == "docs", "other cells as they are"
    label_file(Keyword(), source, tmp_path / "raw.csv", escape_formulas=False)
    assert read(tmp_path / "raw.csv")[0]["text"] == rows[0]["text"]
    label_file(Keyword(), source, tmp_path / "out.jsonl")
    assert read(tmp_path / "out.jsonl")[0]["text"] == rows[0]["text"], "JSON Lines is not a spreadsheet"
