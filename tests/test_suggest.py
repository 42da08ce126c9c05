"""What to label next (inference/suggest.py): margin, entropy and diverse rankings, the model's
guess beside each suggestion, a pool streamed in chunks with only the best kept, and the CLI."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from bertclf.errors import ConfigError
from bertclf.inference.suggest import k_center, suggest, uncertainty

CLASSES = ("bug", "docs", "ui")


class Scripted:
    """A fake model: a text "p1 p2 p3" gets those probabilities; its embedding is [p1, p2, p3]."""

    classes = CLASSES
    name = "fake"
    config: dict = {}  # noqa: RUF012 (read-only: the fake has no settings)
    thresholds = None

    def predict_proba(self, texts):
        return np.array([[float(x) for x in t.split()] for t in texts], np.float32)

    def compute(self, texts, embed=False):
        rows = self.predict_proba(texts)
        return rows, rows.copy()

    def decide(self, rows):
        return [CLASSES[int(r.argmax())] for r in rows], [float(r.max()) for r in rows]


def pool(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([str(i), " ".join(map(str, r))] for i, r in enumerate(rows))
    return path


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_margin_and_entropy_rank_the_least_sure_first():
    rows = np.array([[0.9, 0.05, 0.05], [0.45, 0.44, 0.11], [0.34, 0.33, 0.33], [0.5, 0.3, 0.2]])
    margin = uncertainty(rows, "margin", None)
    assert list(np.argsort(-margin)) == [1, 2, 3, 0] and margin[1] == pytest.approx(0.99)
    assert list(np.argsort(-uncertainty(rows, "entropy", None)))[:2] == [2, 3]
    multi = uncertainty(np.array([[0.9, 0.1], [0.55, 0.0]]), "margin", [0.5, 0.5])
    assert multi[1] > multi[0]  # 0.55 sits next to its threshold


def test_suggestions_carry_the_guess_and_every_column_across_chunks(tmp_path):
    rows = [[0.9, 0.05, 0.05], [0.45, 0.44, 0.11], [0.34, 0.33, 0.33], [0.5, 0.3, 0.2], [0.2, 0.41, 0.39]]
    source = pool(tmp_path / "pool.csv", rows)
    done = suggest(Scripted(), source, tmp_path / "next.csv", n=3, chunk_rows=2)
    out = read(tmp_path / "next.csv")
    assert done == {**done, "pool": 5, "suggested": 3, "strategy": "margin", "text_column": "text"}
    assert [r["id"] for r in out] == ["1", "2", "4"] and [r["suggested_rank"] for r in out] == ["1", "2", "3"]
    assert out[0]["prediction"] == "bug" and float(out[0]["probability"]) == pytest.approx(0.45)
    assert list(out[0]) == ["id", "text", "suggested_rank", "uncertainty", "prediction", "probability"]
    suggest(Scripted(), source, tmp_path / "all.csv", n=50)
    assert len(read(tmp_path / "all.csv")) == 5  # n past the pool: every text, ranked


def test_diverse_spreads_the_suggestions_over_the_embedding_space(tmp_path):
    near = [[0.34, 0.33, 0.33]] * 5  # five near-duplicates, all very uncertain
    apart = [[0.5, 0.45, 0.05], [0.05, 0.5, 0.45]]
    source = pool(tmp_path / "pool.csv", near + apart)
    suggest(Scripted(), source, tmp_path / "margin.csv", n=3)
    suggest(Scripted(), source, tmp_path / "diverse.csv", n=3, strategy="diverse")
    assert [r["id"] for r in read(tmp_path / "margin.csv")] == ["0", "1", "2"]  # the duplicates
    assert sorted(r["id"] for r in read(tmp_path / "diverse.csv")) == ["0", "5", "6"]  # one of them, and the others
    points = np.array([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0]])
    assert k_center(points, 2) == [0, 2]


def test_options_that_do_not_fit_are_clear(tmp_path):
    source = pool(tmp_path / "pool.csv", [[0.5, 0.3, 0.2]])
    with pytest.raises(ConfigError, match="strategy 'random' is not one of"):
        suggest(Scripted(), source, tmp_path / "o.csv", n=1, strategy="random")
    with pytest.raises(ConfigError, match="is the input file"):
        suggest(Scripted(), source, source, n=1)
    with pytest.raises(ConfigError, match=r"name the output \.json"):
        suggest(Scripted(), source, tmp_path / "o.csv", n=1, output_format="label-studio")


def test_label_studio_tasks_of_the_suggestions(tmp_path):
    source = pool(tmp_path / "pool.csv", [[0.9, 0.05, 0.05], [0.45, 0.44, 0.11]])
    suggest(Scripted(), source, tmp_path / "next.json", n=1, output_format="label-studio")
    [task] = json.loads((tmp_path / "next.json").read_text())
    assert task["data"]["id"] == "1" and task["predictions"][0]["result"][0]["value"]["choices"] == ["bug"]


def test_the_cli_suggests_with_a_real_model(tmp_path, trained_models):
    models, _ = trained_models
    source = tmp_path / "pool.csv"
    source.write_text("text\napple banana\nhammer saw\ncat dog apple hammer\nthe a my\n", encoding="utf-8")
    command = [sys.executable, "-m", "bertclf", "suggest", "--models_dir", str(models), "--input", str(source)]
    result = subprocess.run(
        [*command, "--output", str(tmp_path / "next.csv"), "--n", "2", "--strategy", "diverse"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "suggested 2 of 4 texts (strategy diverse" in result.stderr
    assert len(read(tmp_path / "next.csv")) == 2
    missing = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "suggest needs --input (the pool) and --output" in missing.stderr
