"""Read labelled CSV/JSONL files, check them, and split them into train/validation/test."""

import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bertclf import labelstudio
from bertclf.config import LABEL_COLUMNS, TEXT_COLUMNS, TrainConfig, usual_column
from bertclf.errors import DataError
from bertclf.files import existing_file

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """Texts and their labels from one file, after dropping unusable rows."""

    texts: list
    labels: list
    source: str
    dropped: int = 0

    def __len__(self):
        return len(self.texts)


@dataclass
class Splits:
    """The three sets a training run uses, and the class names in index order."""

    train: Examples
    validation: Examples
    test: Examples
    classes: list
    dropped: int = 0  # rows dropped for an empty text or label, over all files read
    multi_label: bool = False  # each label is a set of classes, joined by `separator`
    separator: str = "|"
    feedback: dict | None = None  # what `add_feedback` did, for model_config.json

    def label_sets(self, part: str) -> list[list[str]]:
        """The classes of each text of a split (one each, unless multi-label)."""
        labels = getattr(self, part).labels
        return [split_labels(label, self.separator) for label in labels] if self.multi_label else [[x] for x in labels]


def split_labels(label: str, separator: str) -> list[str]:
    """The classes one multi-label cell names ("bug | ui" -> ["bug", "ui"]), blanks and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in label.split(separator) if part.strip()))


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # -sig: tolerate the BOM that Excel writes
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} has bytes that are not UTF-8 (byte {err.start}: "
            f"{raw[err.start : err.start + 1]!r}). Re-save the file as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path} > fixed.csv`."
        ) from None


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path}: line {number} is not valid JSON ({err.msg}); each line must be one "
                'JSON object such as {"text": "...", "label": "..."}'
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is not a JSON object; write one object per line")
        rows.append(row)
    return pd.DataFrame(rows)


def _read_label_studio(path: Path, text: str, label_column, separator: str) -> tuple[pd.DataFrame, str]:
    """A Label Studio JSON export as rows: each task's data and its annotated choices (the label column)."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); export the project again") from None
    if not labelstudio.is_export(tasks):
        raise DataError(
            f'{path}: a JSON array, but not a Label Studio export (a list of tasks with "data"); write other '
            "data as JSON lines (.jsonl), one object per line"
        )
    rows, label_key, unlabelled = labelstudio.rows_from_export(tasks, str(path), separator)
    if unlabelled:
        log.warning("%s: %d of %d Label Studio tasks have no annotation; left out", path, unlabelled, len(tasks))
    if not rows:
        raise DataError(f"{path}: none of its {len(tasks)} Label Studio tasks is annotated yet; nothing to train on")
    return pd.DataFrame(rows), label_column or label_key


def _pick_column(frame, wanted, candidates, kind, setting, path):
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise DataError(
            f"{path}: no column named {wanted!r} (columns: {', '.join(columns)}). Set {setting}= to one of those."
        )
    found = usual_column(columns, candidates)
    if found is not None:
        return found
    raise DataError(
        f"{path}: cannot tell which column holds the {kind} (columns: {', '.join(columns)}). "
        f"Name it with {setting}=<column>."
    )


def read_examples(path, text_column=None, label_column=None, separator="|") -> Examples:
    """Read one CSV or JSONL file of labelled texts, or a Label Studio JSON export (labelstudio.py;
    several choices are joined with `separator`: multi-label).

    Rows with an empty text or label are dropped, counted and warned about; everything else that is
    wrong raises DataError with the file, row or column and how to fix it.

    Args:
        path: a .csv, .tsv, .jsonl or .json (lines, or a Label Studio export) file.
        text_column: column holding the text; None tries the usual names (TEXT_COLUMNS).
        label_column: column holding the label; None tries the usual names (LABEL_COLUMNS).

    Returns:
        Examples with texts and labels as lists of strings.
    """
    path = existing_file(path, "DATA")
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty. It needs a header row and one row per text.")

    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):  # one document: a Label Studio export?
        frame, label_column = _read_label_studio(path, text, label_column, separator)
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        frame = _read_jsonl(path, text)
    else:
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        try:
            # dtype=str and no NA parsing: a label such as "NA" or "null" stays a label.
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
        except pd.errors.ParserError as err:
            raise DataError(f"{path}: not a well-formed CSV file ({err}). Quote texts that hold commas.") from None
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no rows.")

    text_col = _pick_column(frame, text_column, TEXT_COLUMNS, "text", "TEXT_COLUMN", path)
    label_col = _pick_column(frame, label_column, LABEL_COLUMNS, "label", "LABEL_COLUMN", path)
    if text_col == label_col:
        raise DataError(f"{path}: the text and label column are both {text_col!r}; set TEXT_COLUMN= and LABEL_COLUMN=.")

    texts = frame[text_col].map(lambda v: "" if v is None else str(v).strip())
    labels = frame[label_col].map(lambda v: "" if v is None else str(v).strip())
    keep = (texts != "") & (labels != "")
    dropped = int((~keep).sum())
    if dropped:
        first = [int(i) + 2 for i in frame.index[~keep][:5]]  # +2: 1-based, after the header
        log.warning(
            "%s: dropped %d of %d rows with an empty text or label (first at rows %s)",
            path,
            dropped,
            len(frame),
            ", ".join(map(str, first)),
        )
    if not keep.any():
        raise DataError(f"{path}: every row has an empty {text_col!r} or {label_col!r}; nothing to train on.")
    return Examples(list(texts[keep]), list(labels[keep]), str(path), dropped)


def _check_class_sizes(examples: Examples, needed: int, what: str):
    counts = pd.Series(examples.labels).value_counts()
    if len(counts) < 2:
        raise DataError(
            f"{examples.source}: only one class ({counts.index[0]!r}); a classifier needs at least two. "
            "Check LABEL_COLUMN=."
        )
    small = counts[counts < needed]
    if len(small):
        listed = ", ".join(f"{name!r} ({n})" for name, n in small.items())
        raise DataError(
            f"{examples.source}: too few examples to split ({what} need at least {needed} per class): "
            f"{listed}. Add examples, drop those classes, or pass validation_data/test_data files."
        )


def _split(examples: Examples, fraction: float, seed: int):
    n_classes = len(set(examples.labels))
    # At least one example per class in the held-out part, so every class is measured.
    size = max(math.ceil(fraction * len(examples)), n_classes)
    if len(examples) - size < n_classes:
        raise DataError(f"{examples.source}: {len(examples)} rows are too few to split; add examples.")
    keep_t, held_t, keep_l, held_l = train_test_split(
        examples.texts, examples.labels, test_size=size, stratify=examples.labels, random_state=seed
    )
    return Examples(keep_t, keep_l, examples.source), Examples(held_t, held_l, examples.source)


def _split_multi(examples: Examples, fraction: float, seed: int, separator: str):
    """A seeded random split of multi-label rows (label sets cannot be stratified one by one);
    then a held-out row is moved to the kept part for every class the kept part would lack."""
    size = max(math.ceil(fraction * len(examples)), 1)
    if len(examples) - size < 2:
        raise DataError(f"{examples.source}: {len(examples)} rows are too few to split; add examples.")
    order = np.random.default_rng(seed).permutation(len(examples))
    held, kept = list(order[:size]), list(order[size:])
    seen = {c for i in kept for c in split_labels(examples.labels[i], separator)}
    for i in list(held):
        classes = split_labels(examples.labels[i], separator)
        if not set(classes) <= seen and len(held) > 1:
            held.remove(i)
            kept.append(i)
            seen.update(classes)

    def part(index):
        return Examples([examples.texts[i] for i in index], [examples.labels[i] for i in index], examples.source)

    return part(sorted(kept)), part(sorted(held))


def load_splits(cfg: TrainConfig) -> Splits:
    """Read the data files a TrainConfig names and return seeded, stratified splits.

    Args:
        cfg: a TrainConfig (data, validation_data, test_data, columns, split fractions, seed).

    Returns:
        Splits; classes are sorted by name and every label seen in any split is a training class.
    """

    def read(path: str) -> Examples:
        return read_examples(path, cfg.text_column, cfg.label_column, cfg.label_separator)

    train = read(cfg.data)
    dropped = train.dropped
    sep = cfg.label_separator
    separated = any(sep in label for label in train.labels)
    multi = cfg.multi_label == "on" or (cfg.multi_label == "auto" and separated)
    if multi and cfg.multi_label == "auto":
        log.info(
            "multi-label: labels in %s hold %r, so each text may have several (--multi_label off: one label each)",
            cfg.data,
            sep,
        )
    elif separated and cfg.multi_label == "off":
        log.info("multi_label off: labels holding %r are single classes of their own", sep)
    held_out = [name for name, given in (("validation", cfg.validation_data), ("test", cfg.test_data)) if not given]
    if multi:
        found = sorted({c for label in train.labels for c in split_labels(label, sep)})
        if len(found) < 2:
            raise DataError(f"{train.source}: only one label ({found[0]!r}) in the whole file; a classifier needs two.")
    else:
        _check_class_sizes(train, 1 + len(held_out), " and ".join(["train", *held_out]))

    test = read(cfg.test_data) if cfg.test_data else None
    validation = read(cfg.validation_data) if cfg.validation_data else None
    dropped += sum(part.dropped for part in (test, validation) if part is not None)
    fraction_left = 1.0

    def split(examples, fraction):
        return _split_multi(examples, fraction, cfg.seed, sep) if multi else _split(examples, fraction, cfg.seed)

    if test is None:
        train, test = split(train, cfg.test_split)
        fraction_left -= cfg.test_split
    if validation is None:
        # validation_split is a fraction of the whole file: rescale it to what the test split left.
        train, validation = split(train, cfg.validation_split / fraction_left)

    feedback = None
    if cfg.feedback:
        train, feedback = add_feedback(train, validation, test, cfg)

    def classes_of(part):
        return {c for label in part.labels for c in split_labels(label, sep)} if multi else set(part.labels)

    classes = sorted(classes_of(train))
    for part in (validation, test):
        unknown = sorted(classes_of(part) - set(classes))
        if unknown:
            raise DataError(
                f"{part.source}: labels that never occur in the training data: "
                f"{', '.join(map(repr, unknown[:10]))}. Remove those rows or add training examples."
            )
    if feedback is not None:
        feedback["new_labels"] = sorted(set(classes) - classes_of(validation) - classes_of(test))
        if feedback["new_labels"]:
            log.warning(
                "feedback: %s only in training texts (no validation or test text has them): their scores are "
                "not measured",
                ", ".join(map(repr, feedback["new_labels"][:10])),
            )
    return Splits(train, validation, test, classes, dropped, multi, sep, feedback)


def add_feedback(train: Examples, validation: Examples, test: Examples, cfg: TrainConfig) -> tuple[Examples, dict]:
    """The training split with the stored corrections, each text's label decided by its senders
    (feedback.decide: a majority of distinct senders; a tie is left out and reported): a correction
    of a training text replaces its label, one of a validation or test text is left out (it would
    leak the answer into the scores), any other is a new training text."""
    from bertclf.feedback import corrections, decide, exported_rows, store_path

    store = store_path(cfg.feedback_db, cfg.models_dir)
    if store.suffix.lower() in (".csv", ".tsv", ".jsonl"):  # an export, e.g. from the api container's volume
        rows = exported_rows(store)
        if rows is None:  # no sender column (a hand-made file): one unknown sender, whose last row wins
            exported = read_examples(store)
            rows = [(text, label, "") for text, label in zip(exported.texts, exported.labels, strict=True)]
        decided = decide(rows)
    else:
        decided = corrections(store)
    stored = decided.labels
    held_out = set(validation.texts) | set(test.texts)
    position = {text: i for i, text in enumerate(train.texts)}
    texts, labels = list(train.texts), list(train.labels)
    added = relabelled = skipped = 0
    for text, label in stored:
        if text in held_out:
            skipped += 1
        elif text in position:
            relabelled += labels[position[text]] != label
            labels[position[text]] = label
        else:
            position[text] = len(texts)
            texts.append(text)
            labels.append(label)
            added += 1
    record = {
        "db": str(store.resolve()),
        "corrections": decided.corrections,
        "senders": decided.senders,
        "texts": len(stored) + len(decided.conflicts),
        "added": added,
        "relabelled": relabelled,
        "left_out_in_validation_or_test": skipped,
        "conflicts": len(decided.conflicts),
    }
    log.info(
        "feedback: %d correction(s) of %d text(s) from %d sender(s) in %s: %d new training text(s), %d training "
        "label(s) corrected, %d left out (their text is in the validation or test split)",
        decided.corrections,
        record["texts"],
        decided.senders,
        store,
        added,
        relabelled,
        skipped,
    )
    if decided.conflicts:
        log.warning(
            "feedback: %d text(s) left out: their senders disagree, with as many votes for two labels (first: %s)",
            len(decided.conflicts),
            "; ".join(f"{c['text'][:60]!r} {c['votes']}" for c in decided.conflicts[:3]),
        )
    return Examples(texts, labels, train.source, train.dropped), record
