"""Reading, checking and splitting labelled files: every bad-data case names the fix."""

import logging

import pytest

from bertclf.config import TrainConfig
from bertclf.training.data import DataError, load_splits, read_examples
from conftest import make_texts, write_csv


def cfg(data, **kw):
    return TrainConfig(data=str(data), **kw)


def test_reads_generic_text_label_csv(tiny_csv):
    examples = read_examples(tiny_csv)
    assert len(examples) == 90 and set(examples.labels) == {"fruit", "tool", "animal"}


def test_reads_seed_stackoverflow_columns(tmp_path):
    path = write_csv(
        tmp_path / "so.csv", [("how do I sort a list", "python"), ("null pointer", "java")], header=("post", "tags")
    )
    examples = read_examples(path)
    assert examples.texts == ["how do I sort a list", "null pointer"] and examples.labels == ["python", "java"]


def test_named_columns_and_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"body": "a b", "team": "x"}\n\n{"body": "c", "team": "y"}\n', encoding="utf-8")
    examples = read_examples(path, text_column="body", label_column="team")
    assert examples.texts == ["a b", "c"] and examples.labels == ["x", "y"]


def test_label_na_stays_a_label(tmp_path):
    path = write_csv(tmp_path / "na.csv", [("text one", "NA"), ("text two", "null")])
    assert read_examples(path).labels == ["NA", "null"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"no such file.*DATA="):
        read_examples(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("  \n")
    with pytest.raises(DataError, match=r"e.csv: the file is empty"):
        read_examples(tmp_path / "e.csv")


def test_header_only(tmp_path):
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"header but no rows"):
        read_examples(tmp_path / "h.csv")


def test_missing_named_column_lists_columns(tmp_path):
    path = write_csv(tmp_path / "c.csv", [("a", "b")], header=("body", "label"))
    with pytest.raises(DataError, match=r"no column named 'text' \(columns: body, label\).*TEXT_COLUMN="):
        read_examples(path, text_column="text")


def test_unguessable_column_names_the_setting(tmp_path):
    path = write_csv(tmp_path / "c.csv", [("a", "b")], header=("question", "label"))
    with pytest.raises(DataError, match=r"which column holds the text.*TEXT_COLUMN="):
        read_examples(path)


def test_empty_texts_dropped_counted_and_warned(tmp_path, caplog):
    path = write_csv(tmp_path / "d.csv", [("good", "a"), ("   ", "a"), ("", "b"), ("fine", "b"), ("no label", "")])
    with caplog.at_level(logging.WARNING):
        examples = read_examples(path)
    assert examples.texts == ["good", "fine"] and examples.dropped == 3
    assert "dropped 3 of 5 rows" in caplog.text and "rows 3, 4, 6" in caplog.text


def test_all_texts_empty(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("", "a"), (" ", "b")])
    with pytest.raises(DataError, match=r"nothing to train on"):
        read_examples(path)


def test_non_utf8_names_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nok,a\ncaf\xe9,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: line 3 has bytes that are not UTF-8.*iconv"):
        read_examples(path)


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{oops\n')
    with pytest.raises(DataError, match=r"line 2 is not valid JSON"):
        read_examples(path)


def test_single_class_refused(tmp_path):
    path = write_csv(tmp_path / "one.csv", [(f"text {i}", "only") for i in range(10)])
    with pytest.raises(DataError, match=r"only one class.*at least two"):
        load_splits(cfg(path))


def test_class_too_small_to_split(tmp_path):
    rows = [(f"text {i}", "big") for i in range(20)] + [("tiny one", "rare"), ("tiny two", "rare")]
    path = write_csv(tmp_path / "small.csv", rows)
    with pytest.raises(DataError, match=r"at least 3 per class\): 'rare' \(2\)"):
        load_splits(cfg(path))


def test_split_is_stratified_seeded_and_disjoint(tiny_csv):
    a = load_splits(cfg(tiny_csv, seed=1))
    b = load_splits(cfg(tiny_csv, seed=1))
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    assert (len(a.train), len(a.validation), len(a.test)) == (72, 9, 9)
    for part in (a.train, a.validation, a.test):
        assert set(part.labels) == {"fruit", "tool", "animal"}
    assert a.classes == ["animal", "fruit", "tool"]
    c = load_splits(cfg(tiny_csv, seed=2))
    assert c.test.texts != a.test.texts


def test_given_validation_and_test_files(tmp_path, tiny_csv):
    texts, labels = make_texts(3, seed=9)
    extra = write_csv(tmp_path / "extra.csv", zip(texts, labels, strict=True))
    splits = load_splits(cfg(tiny_csv, validation_data=str(extra), test_data=str(extra)))
    assert len(splits.train) == 90 and len(splits.test) == 9 and len(splits.validation) == 9


def test_unknown_label_in_test_file(tmp_path, tiny_csv):
    test = write_csv(tmp_path / "t.csv", [("apple", "fruit"), ("rocket", "vehicle")])
    with pytest.raises(DataError, match=r"t.csv: labels that never occur in the training data: 'vehicle'"):
        load_splits(cfg(tiny_csv, test_data=str(test)))
