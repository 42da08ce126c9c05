"""Label files on a Ray cluster: `python -m bertclf predict --input DIR|GLOB|FILE --output DIR --engine ray`.

Ray Data reads the CSV, TSV, JSONL or Parquet files, N actors each load the model once
(inference.scorer.BatchScorer, as Ray Data's `map_batches` expects of a callable class) and label
blocks of rows, and every block is written as one file of the input's format into --output, named
part-000000, part-000001, ... in the input's order. The rows are those `predict --input` writes: every
input column kept as it was read (a CSV's cells as text, never re-typed), prediction and probability
added (top-k labels and scores with --top_k; multi-label and abstain as served).

The files are written into a temporary folder beside --output and renamed at the end: a failed or
interrupted run leaves no partial output. When Ray reports a failure the input files are read again
with `predict --input`'s own reader, so a broken row gets the same message (file and line) here.

Needs `pip install 'bertclf[ray]'`; without --address a local Ray is started on this machine's CPUs
and stopped at the end.
"""

import contextlib
import glob
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.errors import ConfigError, DataError, RegistryError
from bertclf.files import read_json_object, spreadsheet_safe
from bertclf.inference.labelfile import FORMATS, open_input, pick_text_column, read_chunks
from bertclf.inference.scorer import BatchScorer, model_folder
from bertclf.registry import MODEL_CONFIG_FILE

READABLE = {**FORMATS, ".parquet": "parquet"}
INSTALL = "pip install 'bertclf[ray]'"


def input_files(given: str) -> list[Path]:
    """The files `--input` names: a file, a folder's files (recursively) or a glob, in name order;
    all of one format.

    Raises:
        ConfigError: nothing matches, or the files mix formats.
    """
    path = Path(given)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in READABLE)
        if not found:
            raise ConfigError(f"--input {given}: no .csv, .tsv, .jsonl or .parquet files in that folder")
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(given, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"--input {given}: no such file or folder, and no file matches it as a pattern")
    unknown = [p for p in found if p.suffix.lower() not in READABLE]
    if unknown:
        raise ConfigError(
            f"--input: {unknown[0]}: name it .csv, .tsv, .jsonl or .parquet so its format is clear "
            f"(got {unknown[0].suffix!r})"
        )
    kinds = sorted({READABLE[p.suffix.lower()] for p in found})
    if len(kinds) > 1:
        raise ConfigError(f"--input mixes formats ({', '.join(kinds)}); label one format per run")
    return found


def columns_of(path: Path, kind: str) -> list[str]:
    """A file's column names (its header; a JSONL file's first object; a Parquet file's schema)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as err:
            raise DataError(f"{path} is not a Parquet file pyarrow can read: {err}") from None
    reader = open_input(path)
    try:
        return reader.columns
    finally:
        reader.text.close()


def find_broken_row(files: list[Path], column: str) -> None:
    """Read `files` as `predict --input` does and raise its DataError for the first broken row, if any."""
    for path in files:
        if READABLE[path.suffix.lower()] == "parquet":
            continue
        reader = open_input(path)
        try:
            for _chunk in read_chunks(reader, column, 4096):
                pass
        finally:
            reader.text.close()


class _Labeller:
    """The actor Ray Data runs: a BatchScorer, and the output cells the target format needs."""

    def __init__(self, kind: str, separator: str, escape_formulas: bool, **scorer: Any):
        self.scorer = BatchScorer(**scorer)
        self.kind, self.separator, self.escape = kind, separator, escape_formulas

    def __call__(self, batch):
        labelled = self.scorer(batch)
        if self.kind in ("csv", "tsv"):  # a cell per value, as labelfile.Writer writes them
            for name in labelled.columns:
                labelled[name] = [self._cell(value) for value in labelled[name]]
        return labelled

    def _cell(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and value != value):
            text = ""
        elif isinstance(value, (list, tuple, np.ndarray)):  # a multi-label answer: joined like the training labels
            items = value.tolist() if isinstance(value, np.ndarray) else value
            text = self.separator.join("" if v is None else str(v) for v in items)
        elif isinstance(value, (dict, bool)):
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = str(value)
        return spreadsheet_safe(text) if self.escape else text


def _files_named(kind: str):
    from ray.data.datasource import FilenameProvider

    class InOrder(FilenameProvider):
        """part-000000.csv, part-000001.csv, ...: one per block, in the input's order."""

        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:06d}.{kind}"

    return InOrder()


def label_files(
    model_dir: str | os.PathLike,
    source: str,
    target: str | os.PathLike,
    text_column: str | None = None,
    top_k: int = 0,
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float = 1,
    chunk_rows: int = 2048,
    escape_formulas: bool = True,
    precision: str = "auto",
    min_confidence: float | None = None,
    max_seq_len: int | None = None,
    long_text: str | None = None,
) -> dict:
    """Label every row of the files `source` names into the folder `target` with Ray; returns a
    summary (rows, files, seconds, rows_per_second, workers, text_column).

    Raises:
        ConfigError: Ray is not installed, the options do not fit the files, or --output is taken.
        DataError: a row is broken (the file and line, as `predict --input` says it).
        RegistryError: not a model folder.
    """
    folder = model_folder(model_dir)
    files = input_files(source)
    kind = READABLE[files[0].suffix.lower()]
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"--output {target} already exists and is not an empty folder; name a new folder")
    if not target.parent.is_dir():
        raise ConfigError(f"--output {target}: the folder {target.parent} does not exist")
    if any(target.resolve() == p.resolve() or target.resolve() in p.resolve().parents for p in files):
        raise ConfigError(f"--output {target} holds input files; write the labelled rows to another folder")
    config = read_json_object(folder / MODEL_CONFIG_FILE, RegistryError)
    trained = config.get("hyperparameters", {}).get("text_column")
    separator = (config.get("multi_label") or {}).get("separator", "|")
    headers = {path: columns_of(path, kind) for path in files}
    chosen = {pick_text_column(columns, text_column, trained, path) for path, columns in headers.items()}
    if len(chosen) > 1:
        raise ConfigError(
            f"--input's files hold their text in different columns ({', '.join(sorted(chosen))}); set --text_column"
        )
    column = chosen.pop()
    for path, columns in headers.items():
        clash = sorted({"prediction", "probability"} & set(columns))
        if clash:
            raise ConfigError(
                f"{path} already has the column(s) {', '.join(clash)} this would add; rename them (a file labelled "
                "before? label the original)"
            )
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray: {INSTALL}") from None
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            stack.callback(ray.shutdown)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = workers or max(1, int(cluster_cpus // worker_cpus))
        staging = target.parent / f".{target.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        stack.callback(shutil.rmtree, staging, True)
        try:
            rows = _run(
                ray,
                files,
                kind,
                headers,
                staging,
                actors,
                worker_cpus,
                chunk_rows,
                {
                    "kind": kind,
                    "separator": separator if isinstance(separator, str) else "|",
                    "escape_formulas": escape_formulas,
                    "model_dir": str(folder),
                    "text_column": column,
                    "top_k": top_k,
                    "threads": max(1, int(worker_cpus)),
                    "precision": precision,
                    "min_confidence": min_confidence,
                    "max_seq_len": max_seq_len,
                    "long_text": long_text,
                },
            )
        except (KeyboardInterrupt, ConfigError, DataError):
            raise
        except Exception as err:
            raise _explained(err, files, column) from None
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(staging, target)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "files": len(list(target.iterdir())),
        "seconds": seconds,
        "rows_per_second": rows / max(seconds, 1e-9),
        "workers": actors,
        "text_column": column,
    }


def _run(ray, files, kind, headers, staging, actors, worker_cpus, chunk_rows, labeller) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    for name in ("ray", "ray.data"):  # its progress bars stay; its INFO lines would bury our messages
        logging.getLogger(name).setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # part-000000 ... hold the rows in input order
    paths = [str(p) for p in files]
    blocks = max(len(files), 2 * actors)  # a single file still spreads over every actor
    # Reading and writing ask for no CPU of their own: with every CPU given to an actor, a task that
    # waited for one would never start (Ray Data's budget leaves the readers none).
    common = {"partitioning": None, "override_num_blocks": blocks, "num_cpus": 0}
    if kind in ("csv", "tsv"):
        names = sorted({c for columns in headers.values() for c in columns})
        dataset = ray.data.read_csv(
            paths,
            parse_options=pacsv.ParseOptions(delimiter="," if kind == "csv" else "\t", newlines_in_values=True),
            # Every cell as the text it is: "007" stays "007" and an empty cell stays "" (as predict --input).
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
            **common,
        )
    elif kind == "jsonl":
        dataset = ray.data.read_json(paths, lines=True, **common)
    else:
        dataset = ray.data.read_parquet(paths, **common)
    labelled = dataset.map_batches(
        _Labeller,
        fn_constructor_kwargs=labeller,
        batch_format="pandas",
        batch_size=chunk_rows,
        concurrency=actors,
        num_cpus=worker_cpus,
    )
    free = {"num_cpus": 0}
    named = _files_named("jsonl" if kind == "jsonl" else kind)
    if kind == "csv":
        labelled.write_csv(str(staging), filename_provider=named, ray_remote_args=free)
    elif kind == "tsv":
        labelled.write_csv(
            str(staging),
            filename_provider=named,
            ray_remote_args=free,
            arrow_csv_args_fn=lambda: {"write_options": pacsv.WriteOptions(delimiter="\t")},
        )
    elif kind == "jsonl":
        labelled.write_json(
            str(staging),
            filename_provider=named,
            ray_remote_args=free,
            pandas_json_args_fn=lambda: {"force_ascii": False},
        )
    else:
        labelled.write_parquet(str(staging), filename_provider=named, ray_remote_args=free)
    return _count_rows(staging, kind)


def _count_rows(folder: Path, kind: str) -> int:
    """Rows written (read back from the files: Ray's writers do not say)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    total = 0
    for path in folder.iterdir():
        if kind == "parquet":
            total += pq.read_metadata(path).num_rows
        elif kind == "jsonl":  # one object per line: a newline inside a text is written as \n
            with open(path, "rb") as file:
                while chunk := file.read(1 << 20):
                    total += chunk.count(b"\n")
        else:
            options = pacsv.ParseOptions(delimiter="," if kind == "csv" else "\t", newlines_in_values=True)
            with pacsv.open_csv(path, parse_options=options) as batches:
                total += sum(batch.num_rows for batch in batches)
    return total


def _explained(err: Exception, files: list[Path], column: str) -> Exception:
    """What Ray's failure means in `predict --input`'s words: the first broken row of the files
    (read again with its reader), else the innermost error Ray carried."""
    try:
        find_broken_row(files, column)
    except (ConfigError, DataError) as found:
        return found
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    for known in (DataError, ConfigError):
        if isinstance(cause, known):
            return known(str(cause))
    last = [line for line in str(err).splitlines() if line.strip()]
    return DataError(f"labelling with Ray failed: {last[-1] if last else type(err).__name__}")
