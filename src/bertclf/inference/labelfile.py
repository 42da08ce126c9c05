"""Label a whole file (seed 002's "apply" step): `python -m bertclf predict --input F --output F`.

Streams a CSV, TSV or JSONL file of any size in chunks of rows: memory stays flat whatever the
length. Every input column is kept and `prediction` and `probability` are added (with `--top_k K`
also `label_1`, `score_1`, ... `label_K`, `score_K`). The fast engine runs one chunk while the next
is read and the previous one written (ONNX Runtime releases the GIL), on every core. The output is
written to a temporary file beside it and renamed at the end, so an interrupted or failed run
leaves no half file (and an older output, if any, untouched).

Only the standard library reads and writes the files (csv, json): this runs in the serving install.
"""

import contextlib
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from bertclf import labelstudio
from bertclf.config import TEXT_COLUMNS, usual_column
from bertclf.errors import ConfigError, DataError
from bertclf.files import atomic_text_file, spreadsheet_safe, temporary_sibling
from bertclf.inference import explain as explanations

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# The csv module refuses fields over 128 KiB by default; a long document is a fair text. Past this
# one field is more than a model reads in any case, and the limit keeps a broken quote (which
# swallows the rest of the file into one field) from growing without end.
MAX_FIELD_BYTES = 16 << 20


def file_format(path: Path, role: str) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{role} {path}: name it .csv, .tsv or .jsonl so its format is clear (got {path.suffix!r})")
    return kind


@dataclass
class Reader:
    """The rows of an input file, in order, and how far through the file reading is."""

    path: Path
    kind: str
    binary: IO[bytes]
    text: IO[str]
    columns: list[str]
    rows: Iterator[tuple[int, dict]]  # (line number, row)

    @property
    def position(self) -> int:
        return self.binary.tell()


def not_utf8(path: Path, binary: IO[bytes], err: UnicodeDecodeError) -> DataError:
    """The error for bytes that are not UTF-8, with roughly where (the decoder reads in blocks)."""
    where = binary.tell() - len(err.object) + err.start
    return DataError(
        f"{path}: bytes that are not UTF-8 near byte {where:,}; re-save the file as UTF-8, e.g. "
        f"`iconv -f latin1 -t utf-8 {path} > fixed{path.suffix}`"
    )


def open_input(path: Path) -> Reader:
    kind = file_format(path, "input")
    try:
        binary = open(path, "rb")  # noqa: SIM115 (closed by the caller's ExitStack)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")  # -sig: Excel's BOM
    try:
        return _open(path, kind, binary, text)
    except UnicodeDecodeError as err:
        error = not_utf8(path, binary, err)
        text.close()
        raise error from None
    except BaseException:
        text.close()
        raise


def _open(path: Path, kind: str, binary: IO[bytes], text: IO[str]) -> Reader:
    if kind == "jsonl":
        first = _jsonl_rows(path, text)
        try:
            number, row = next(first)
        except StopIteration:
            raise DataError(f"{path} has no rows") from None
        columns = [str(key) for key in row]

        def rows() -> Iterator[tuple[int, dict]]:
            yield number, row
            yield from first

        return Reader(path, kind, binary, text, columns, rows())
    csv.field_size_limit(MAX_FIELD_BYTES)
    reader = csv.reader(text, delimiter="," if kind == "csv" else "\t")
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path} is empty; the first line must name the columns") from None
    except csv.Error as err:
        raise DataError(f"{path} line 1: {err}") from None
    if len(set(header)) != len(header):
        raise DataError(f"{path}: the header names a column twice ({', '.join(header)}); rename one")
    return Reader(path, kind, binary, text, header, _csv_rows(path, reader, header))


def _csv_rows(path: Path, reader, header: list[str]) -> Iterator[tuple[int, dict]]:
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. a field past MAX_FIELD_BYTES: a quote that never closes
            raise DataError(f"{path} line {reader.line_num}: {err}; check the quotes on that line") from None
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):
            raise DataError(
                f"{path} line {reader.line_num}: {len(fields)} fields where the header has {len(header)}; "
                "quote a field that holds the delimiter"
            )
        yield reader.line_num, dict(zip(header, fields, strict=True))


def _jsonl_rows(path: Path, text: IO[str]) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {number} is not valid JSON ({err.msg}); write one object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number} is not a JSON object; write one object per line")
        yield number, row


def pick_text_column(columns: list[str], wanted: str | None, trained: str | None, path: Path) -> str:
    """The column to classify: the one asked for, else the one the model was trained on, else the usual names."""
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise ConfigError(f"{path}: no column named {wanted!r} (columns: {', '.join(columns)}); set --text_column")
    if trained in columns:
        return trained
    found = usual_column(columns, TEXT_COLUMNS)
    if found is not None:
        return found
    raise ConfigError(
        f"{path}: cannot tell which column holds the text (columns: {', '.join(columns)}); name it with --text_column"
    )


class Writer:
    """Writes rows with the answers added, to a temporary file that `commit` renames into place.
    Kind "label-studio": a JSON array of Label Studio tasks (labelstudio.task), `model_version`
    naming the model."""

    def __init__(
        self,
        path: Path,
        kind: str,
        columns: list[str],
        separator: str = "|",
        escape_formulas: bool = True,
        model_version: str = "",
    ):
        self.path, self.kind, self.columns, self.separator = path, kind, columns, separator
        self.escape = spreadsheet_safe if escape_formulas else str
        self.model_version, self.tasks = model_version, 0
        self.temporary = temporary_sibling(path)
        # "x": a planted symlink at the name fails instead of being followed (files.temporary_sibling).
        self.file = open(self.temporary, "x", encoding="utf-8", newline="")  # noqa: SIM115 (closed in commit/abort)
        if kind in ("csv", "tsv"):
            self.csv = csv.writer(self.file, delimiter="," if kind == "csv" else "\t")
            self.csv.writerow(columns)
        elif kind == "label-studio":
            self.file.write("[")

    def write(self, row: dict, added: dict | None = None) -> None:
        """Write `row` with the columns `added` (the answers; a Label Studio task needs them)."""
        added = added or {}
        if self.kind == "label-studio":  # one task per line inside the array, so the file stays diffable
            entry = labelstudio.task(row, added["prediction"], added["probability"], self.model_version)
            self.file.write(("," if self.tasks else "") + "\n" + json.dumps(entry, ensure_ascii=False))
            self.tasks += 1
        elif self.kind == "jsonl":
            self.file.write(json.dumps({**row, **added}, ensure_ascii=False) + "\n")
        else:
            merged = {**row, **added}
            self.csv.writerow([self.escape(_cell(merged.get(column), self.separator)) for column in self.columns])

    def commit(self) -> None:
        if self.kind == "label-studio":
            self.file.write("\n]\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


def _cell(value: Any, separator: str) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # a multi-label answer in a CSV cell: joined like the training labels
        return separator.join(_cell(v, separator) for v in value)
    if isinstance(value, (dict, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def answers(predictor, texts: list[str], top_k: int, explain: bool = False) -> list[dict]:
    """What each text's row gains: prediction, probability (and the top-k labels and scores; with
    `explain`, an explanation: the label explained and each word with its weight, explain.py)."""
    rows = predictor.predict_proba(texts)
    labels, probabilities = predictor.decide(rows)
    explained = explanations.explain(predictor, texts) if explain else None
    added = []
    for i, (label, probability) in enumerate(zip(labels, probabilities, strict=True)):
        entry: dict[str, Any] = {
            "prediction": label,
            "probability": [round(float(p), 6) for p in probability]
            if isinstance(probability, list)
            else round(float(probability), 6),
        }
        if top_k:
            order = rows[i].argsort()[::-1][:top_k]
            for rank, index in enumerate(order, start=1):
                entry[f"label_{rank}"] = predictor.classes[index]
                entry[f"score_{rank}"] = round(float(rows[i][index]), 6)
        if explained is not None:
            words = [[w["word"], w["weight"]] for w in explained[i].words if w["read"]]
            entry["explanation"] = {"label": explained[i].label, "words": words}
        added.append(entry)
    return added


def added_columns(top_k: int, explain: bool = False) -> list[str]:
    return (
        ["prediction", "probability"]
        + [f"{kind}_{rank}" for rank in range(1, top_k + 1) for kind in ("label", "score")]
        + (["explanation"] if explain else [])
    )


def label_file(
    predictor,
    source: str | os.PathLike,
    target: str | os.PathLike,
    text_column: str | None = None,
    top_k: int = 0,
    chunk_rows: int = 2048,
    progress: bool | None = None,
    escape_formulas: bool = True,
    output_format: str | None = None,
    explain: bool = False,
) -> dict:
    """Classify every row of `source` into `target`, keeping its columns; returns a summary
    (rows, seconds, rows_per_second, text_column; label_config: the labeling config file written
    beside a Label Studio target). In a CSV or TSV target, cells a spreadsheet would run as a formula
    get a leading ' (files.spreadsheet_safe) unless `escape_formulas` is off. `output_format`
    "label-studio" writes Label Studio tasks with the answers as pre-annotations into a .json
    target, and the labeling config to paste into the project as <target>.label_config.xml;
    default: the target's format by its name. `explain` adds an `explanation` column: the label
    explained and each word the model reads with its weight (explain.py; W + 1 texts' work for a
    text of W words).

    Raises:
        ConfigError: the options do not fit the files (same path, unknown format or column, ...).
        DataError: the input breaks off or is not what its name says (with the line).
    """
    source, target = Path(source), Path(target)
    if top_k < 0 or top_k > len(predictor.classes):
        raise ConfigError(f"top_k must be 0-{len(predictor.classes)} (the model has {len(predictor.classes)} labels)")
    if source.resolve() == target.resolve() or (target.exists() and os.path.samefile(source, target)):
        raise ConfigError(f"--output {target} is the input file; write the labelled rows to another file")
    if output_format == "label-studio":
        if target.suffix.lower() != ".json":
            raise ConfigError(f"--format label-studio writes a JSON file: name the output .json, not {target.name}")
        out_kind = "label-studio"
    elif output_format is None:
        out_kind = file_format(target, "output")
    else:
        raise ConfigError(f"--format {output_format!r}: only label-studio (else the output's name says the format)")
    if not target.parent.is_dir():
        raise ConfigError(f"--output {target}: the folder {target.parent} does not exist")
    trained = predictor.config.get("hyperparameters", {}).get("text_column")
    started = time.perf_counter()
    done = 0
    with contextlib.ExitStack() as stack:
        reader = open_input(source)
        stack.callback(reader.text.close)
        column = pick_text_column(reader.columns, text_column, trained, source)
        extra = added_columns(top_k, explain)
        clash = sorted(set(extra) & set(reader.columns))
        if clash:
            raise ConfigError(
                f"{source} already has the column(s) {', '.join(clash)} this would add; rename them (a file labelled "
                "before? label the original)"
            )
        separator = (predictor.config.get("multi_label") or {}).get("separator", "|")
        writer = Writer(
            target,
            out_kind,
            reader.columns + extra,
            separator if isinstance(separator, str) else "|",
            escape_formulas,
            model_version=predictor.name if out_kind == "label-studio" else "",
        )
        bar = tqdm(
            total=source.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"labelling {source.name}",
            disable=progress is False or (progress is None and not sys.stderr.isatty()),
            file=sys.stderr,
        )
        stack.callback(bar.close)
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="label") as pool:
                pending: tuple[list[tuple[int, str, dict]], Future] | None = None
                for chunk in read_chunks(reader, column, chunk_rows):
                    # Compute this chunk while the previous one is written and the next one read.
                    running = (chunk, pool.submit(answers, predictor, [text for _, text, _ in chunk], top_k, explain))
                    if pending is not None:
                        done += _write(writer, *pending)
                    pending = running
                    bar.update(reader.position - bar.n)
                    bar.set_postfix_str(f"{done:,} rows, {done / max(time.perf_counter() - started, 1e-9):,.0f} rows/s")
                if pending is not None:
                    done += _write(writer, *pending)
            writer.commit()
        except BaseException:  # an error or Ctrl-C: no half file
            writer.abort()
            raise
        bar.update(source.stat().st_size - bar.n)
    seconds = time.perf_counter() - started
    summary: dict[str, Any] = {"rows": done, "seconds": seconds, "rows_per_second": done / max(seconds, 1e-9)}
    summary["text_column"] = column
    if out_kind == "label-studio":
        config = target.with_name(target.stem + ".label_config.xml")
        with atomic_text_file(config) as file:
            file.write(labelstudio.labeling_config(list(predictor.classes), column, predictor.thresholds is not None))
        summary["label_config"] = str(config)
    return summary


def read_chunks(reader: Reader, column: str, size: int) -> Iterator[list[tuple[int, str, dict]]]:
    """The rows of `reader` in lists of `size` (line number, text, row), checked as they come.

    Raises:
        DataError: a row without its text, or bytes that are not UTF-8 (with the line or byte).
    """
    chunk: list[tuple[int, str, dict]] = []
    try:
        for number, row in reader.rows:
            text = row.get(column)
            if text is None:
                raise DataError(f"{reader.path} line {number} has no {column!r}; every row needs its text")
            chunk.append((number, text if isinstance(text, str) else json.dumps(text, ensure_ascii=False), row))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except UnicodeDecodeError as err:
        raise not_utf8(reader.path, reader.binary, err) from None
    if chunk:
        yield chunk


def _write(writer: Writer, chunk: list[tuple[int, str, dict]], computed: Future) -> int:
    for (_, _, row), added in zip(chunk, computed.result(), strict=True):
        writer.write(row, added)
    return len(chunk)
