"""Explanations by occlusion (inference/explain.py): a word's weight is the drop in the label's
probability without it, computed in one batched pass through the predictor; words past the
sequence length are not read and weigh 0; the CLI and `predict --input` show them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bertclf.errors import ConfigError
from bertclf.inference.explain import explain, spans, without
from bertclf.inference.labelfile import label_file


class Counting:
    """A fake model: P(bug) = 0.2 + 0.3 per "bug"/"crash" word (at most 0.9), the rest to "docs";
    it reads `length` tokens, one per word, and records every batch it is asked for."""

    classes = ("bug", "docs")
    name = "fake"
    long_text = "truncate"
    config: dict = {}  # noqa: RUF012 (read-only here: the fake model has no settings)
    thresholds = None

    def __init__(self, length=64):
        self.sequence_length = length
        self.calls = []

    def token_counts(self, texts):
        return np.array([min(len(t.split()) + 2, self.sequence_length) for t in texts])

    def predict_proba(self, texts):
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            words = text.split()[: self.sequence_length - 2]
            p = min(0.9, 0.2 + 0.3 * sum(w in ("bug", "crash") for w in words))
            rows.append([p, 1 - p])
        return np.array(rows, np.float32)

    def decide(self, rows):
        return [self.classes[int(r.argmax())] for r in rows], [float(r.max()) for r in rows]


def test_a_words_weight_is_the_drop_in_probability_without_it():
    model = Counting()
    [why] = explain(model, ["a crash and a bug here"])
    assert why.label == "bug" and why.probability == pytest.approx(0.8)
    weights = {w["word"]: w["weight"] for w in why.words}
    assert weights["crash"] == pytest.approx(0.3) and weights["bug"] == pytest.approx(0.3)
    assert weights["here"] == pytest.approx(0.0) and [w["word"] for w in why.top(2)] == ["crash", "bug"]
    assert model.calls == [1 + 6]  # the text and its 6 variants, in one call


def test_the_label_can_be_named_and_must_exist():
    [why] = explain(Counting(), ["a crash"], label="docs")
    assert why.label == "docs" and {w["word"]: w["weight"] for w in why.words}["crash"] == pytest.approx(-0.3)
    with pytest.raises(ConfigError, match="label 'feature' is not one of the model's labels"):
        explain(Counting(), ["x"], label="feature")


def test_words_past_the_sequence_length_are_not_read_and_weigh_nothing():
    model = Counting(length=5)  # 3 words fit beside [CLS] and [SEP]
    [why] = explain(model, ["one two three crash bug"])
    assert [w["read"] for w in why.words] == [True, True, True, False, False]
    assert [w["weight"] for w in why.words][3:] == [0.0, 0.0]
    assert model.calls == [1 + 3]
    [capped] = explain(Counting(), ["x crash y z bug w"], max_words=4)  # varied: 4 words, read: all 6
    assert all(w["read"] for w in capped.words)
    assert [w["weight"] for w in capped.words] == [0.0, pytest.approx(0.3), 0.0, 0.0, 0.0, 0.0]


def test_deleting_a_word_keeps_the_rest_of_the_text():
    text = "  first second\tthird  "
    cut = spans(text)
    assert [text[s:e] for s, e in cut] == ["first", "second", "third"]
    assert [without(text, cut, i) for i in range(3)] == ["  second\tthird  ", "  first third  ", "  first second\t "]
    assert explain(Counting(), [""])[0].words == []


def test_predict_input_adds_an_explanation_column(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\na crash here\nfine docs\n", encoding="utf-8")
    label_file(Counting(), source, tmp_path / "out.jsonl", explain=True)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["explanation"]["label"] == "bug"
    assert rows[0]["explanation"]["words"] == [["a", 0.0], ["crash", pytest.approx(0.3)], ["here", 0.0]]


def test_a_bare_yes_no_option_before_a_text_leaves_the_text_alone():
    from bertclf.cli import bare_flags

    assert bare_flags(["predict", "--explain", "a text"]) == ["predict", "--explain", "true", "a text"]
    assert bare_flags(["predict", "--explain", "false", "a text"]) == ["predict", "--explain", "false", "a text"]
    assert bare_flags(["predict", "--explain", "--top_k", "2"]) == ["predict", "--explain", "--top_k", "2"]
    assert bare_flags(["predict", "a text", "--explain"]) == ["predict", "a text", "--explain"]
    assert bare_flags(["-v", "predict", "train", "--explain", "x"])[-2:] == ["true", "x"]  # "train" is a text here


def test_the_cli_explains_with_a_real_model(trained_models):
    models, _ = trained_models
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "--explain", "apple banana the"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "why fruit" in result.stdout and "apple +" in result.stdout, result.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "x", "--explain_label", "fruit"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "--explain_label goes with --explain" in refused.stderr
