"""Corrections from the people who use a model (seed 001's thumbs up/down), kept for the next run.

`POST /feedback` stores `{"text", "label"}` (and what the model predicted, and which model) in one
SQLite file, `models/feedback.sqlite3` by default. SQLite in WAL mode lets several gunicorn
workers write at once: each write is one short transaction, a writer waits up to `BUSY_SECONDS`
for another's, and readers (`feedback export`, `make train FEEDBACK=1`) never block writers.
Only the standard library's sqlite3: no server to run, and the file is the whole store.

`python -m bertclf feedback export --output F` writes the corrections as a training CSV (text,
label, and when/which model); `make train FEEDBACK=1` adds them to the training split only, never
to validation or test, so a model's scores stay comparable with the run before.
"""

import contextlib
import csv
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from bertclf.config import ConfigError
from bertclf.files import atomic_text_file

FEEDBACK_FILE = "feedback.sqlite3"
BUSY_SECONDS = 10.0  # how long a write waits for another worker's before it fails
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    predicted TEXT,
    model TEXT,
    served_model TEXT
)
"""


class FeedbackError(ConfigError):
    """The feedback store cannot be opened or read; the message names the file and the fix."""


class StoreFull(Exception):
    """The store holds as many corrections as it may (`max_rows`); nothing was written."""


def _busy(err: sqlite3.Error) -> bool:
    return isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err))


def _set_up(connection: sqlite3.Connection, create: bool) -> None:
    """WAL mode and the table, retried while another process does the same.

    Turning a new file to WAL takes its write lock from inside a read, and SQLite does not wait
    for a lock there (waiting could deadlock): when two workers open a new store at once, one gets
    "database is locked" at once, whatever the busy timeout. Retrying for up to BUSY_SECONDS is
    what the timeout would have done."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe in WAL mode
            if create:
                connection.execute(SCHEMA)
            return
        except sqlite3.OperationalError as err:
            if not _busy(err) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # jittered: two retrying workers do not collide again


def default_path(models_dir: str | os.PathLike) -> Path:
    return Path(models_dir) / FEEDBACK_FILE


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    if not create and not path.is_file():
        raise FeedbackError(f"no feedback store at {path}: POST /feedback to a running server creates it")
    try:
        connection = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)  # autocommit; BEGIN by hand
        _set_up(connection, create)
        return connection
    except sqlite3.Error as err:
        raise FeedbackError(
            f"cannot open the feedback store {path} ({err}); point --feedback_db at a file in a folder "
            "this user can write"
        ) from None


class FeedbackStore:
    """One connection per thread to the SQLite file (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = _connect(self.path, create=True)
        return connection

    def add(
        self,
        text: str,
        label: str,
        predicted: str | None,
        model: str | None,
        served_model: str | None,
        max_rows: int = 0,
    ) -> int:
        """Store one correction; returns its id. Raises StoreFull when the store already holds
        `max_rows` (0: no cap), sqlite3.Error when the file cannot be written.

        The write lock is taken before the cap is read (BEGIN IMMEDIATE), so the cap is exact and a
        writer waits for another worker's write. A deferred transaction would start as a read, and
        SQLite cannot upgrade a read whose snapshot another worker has since changed: it answers
        "database is locked" at once instead of waiting."""
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            if max_rows and _last_id(connection) >= max_rows:
                raise StoreFull(max_rows)
            cursor = connection.execute(
                "INSERT INTO feedback (created, text, label, predicted, model, served_model) VALUES (?, ?, ?, ?, ?, ?)",
                (created, text, label, predicted, model, served_model),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return int(cursor.lastrowid or 0)

    def last_id(self) -> int:
        """The id of the last correction stored (ids only grow: how many were ever stored)."""
        return _last_id(self._connection())


def _last_id(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT COALESCE(MAX(id), 0) FROM feedback").fetchone()[0])


EXPORT_COLUMNS = ("text", "label", "created", "predicted", "model")


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    """A read-only look at the store (a snapshot: writers carry on meanwhile); a query that fails
    inside it is a FeedbackError naming the file."""
    connection = _connect(Path(path), create=False)
    try:
        yield connection
    except sqlite3.Error as err:
        raise FeedbackError(f"cannot read the feedback store {path}: {err}") from None
    finally:
        connection.close()


def corrections(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(text, label) of every stored correction, the latest one per text (a text corrected twice
    counts once, with its last label), oldest first."""
    with reading(path) as connection:
        rows = connection.execute(
            "SELECT text, label FROM feedback WHERE id IN (SELECT MAX(id) FROM feedback GROUP BY text) ORDER BY id"
        ).fetchall()
    return [(str(text), str(label)) for text, label in rows]


def _export(path: str | os.PathLike, f) -> int:
    """Every correction, oldest first, as CSV rows on `f`; returns how many."""
    with reading(path) as connection:  # first: a missing store writes nothing, not even the header
        writer = csv.writer(f)
        writer.writerow(EXPORT_COLUMNS)
        written = 0
        for row in connection.execute(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM feedback ORDER BY id"):
            writer.writerow(["" if value is None else value for value in row])
            written += 1
    return written


def export_csv(path: str | os.PathLike, output: str | os.PathLike) -> int:
    """Write every correction (all of them, oldest first) as a training CSV, to `output` or, for
    "-", to stdout; returns the rows written. Columns: text, label (what `make train` reads), then
    created, predicted, model."""
    if str(output) == "-":
        return _export(path, sys.stdout)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text_file(output, newline="") as f:  # a store that cannot be read, or Ctrl-C: no half file
        return _export(path, f)


def label_counts(path: str | os.PathLike) -> dict[str, int]:
    with reading(path) as connection:
        rows = connection.execute("SELECT label, COUNT(*) FROM feedback GROUP BY label ORDER BY 2 DESC").fetchall()
    return {str(label): int(n) for label, n in rows}
