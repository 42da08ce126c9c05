"""Corrections from the people who use a model (seed 001's thumbs up/down), kept for the next run.

`POST /feedback` stores `{"text", "label"}` (and what the model predicted, which model, and who
sent it) in one SQLite file, `models/feedback.sqlite3` by default. SQLite in WAL mode lets several
gunicorn workers write at once: each write is one short transaction, a writer waits up to
`BUSY_SECONDS` for another's, and readers (`feedback export`, `make train FEEDBACK=1`) never block
writers. Only the standard library's sqlite3: no server to run, and the file is the whole store.

Corrections come from clients we do not trust, so the store bounds them (`Limits`: rows and bytes
for the whole store, and rows, bytes and a rate for each sender, so one sender at its bound never
locks the others out), and a text's label is decided by its senders, not by the last write
(`decide`): each sender's latest correction is one vote, the label with the most votes wins, and a
tie is a conflict that training leaves out and reports. A sender is the API token's id (a hash:
never the token) when the server needs tokens, else the client's address.

`python -m bertclf feedback export --output F` writes the corrections as a training CSV (text,
label, when/which model, sender); `make train FEEDBACK=1` adds the decided labels to the training
split only, never to validation or test, so a model's scores stay comparable with the run before.
"""

import contextlib
import csv
import os
import random
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bertclf.errors import ConfigError
from bertclf.files import atomic_text_file, spreadsheet_safe, spreadsheet_unsafe

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
    served_model TEXT,
    sender TEXT NOT NULL DEFAULT ''
)
"""
# What each sender has stored, kept in step with `feedback` in the same transactions: its bounds
# are checked in constant time on every write.
SENDERS = """
CREATE TABLE IF NOT EXISTS senders (
    sender TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL
)
"""
UNKNOWN_SENDER = ""  # corrections stored before senders were recorded: one sender, unknown
RATE_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Limits:
    """Bounds on what POST /feedback may store (0: none).

    Args:
        max_rows: corrections in the whole store.
        max_bytes: the store file's size.
        sender_rows: corrections from one sender.
        sender_bytes: bytes of text and labels from one sender.
        sender_per_minute: corrections from one sender in any minute.
    """

    max_rows: int = 0
    max_bytes: int = 0
    sender_rows: int = 0
    sender_bytes: int = 0
    sender_per_minute: int = 0


class FeedbackError(ConfigError):
    """The feedback store cannot be opened or read; the message names the file and the fix."""


class StoreFull(Exception):
    """The store holds as many corrections (or bytes) as it may; nothing was written."""


class SenderLimit(Exception):
    """This sender has stored as much as one sender may, or is sending too fast; nothing was
    written. `retry_after`: seconds until it may send again (None: not by waiting)."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


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
                _create_tables(connection)
            return
        except sqlite3.OperationalError as err:
            if not _busy(err) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # jittered: two retrying workers do not collide again


def _create_tables(connection: sqlite3.Connection) -> None:
    """The tables, and a store written before senders were recorded brought up to date (its rows
    count as one unknown sender)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(SCHEMA)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(feedback)")}
        if "sender" not in columns:
            connection.execute(f"ALTER TABLE feedback ADD COLUMN sender TEXT NOT NULL DEFAULT '{UNKNOWN_SENDER}'")
        fresh = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'senders'").fetchone() is None
        connection.execute(SENDERS)
        if fresh:
            connection.execute(
                "INSERT INTO senders SELECT sender, COUNT(*), SUM(LENGTH(CAST(text AS BLOB)) + "
                "LENGTH(CAST(label AS BLOB))) FROM feedback GROUP BY sender"
            )
        connection.execute("CREATE INDEX IF NOT EXISTS feedback_by_sender ON feedback (sender, created)")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def default_path(models_dir: str | os.PathLike) -> Path:
    return Path(models_dir) / FEEDBACK_FILE


def store_path(feedback_db: str | os.PathLike | None, models_dir: str | os.PathLike) -> Path:
    """The store every command uses: `feedback_db` if given, else $BERTCLF_FEEDBACK_DB (the api image
    sets it), else feedback.sqlite3 in models_dir."""
    return Path(feedback_db or os.environ.get("BERTCLF_FEEDBACK_DB") or default_path(models_dir))


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    if not create and not path.is_file():
        raise FeedbackError(f"no feedback store at {path}: POST /feedback to a running server creates it")
    try:
        if create:  # readable by this user only: it holds what clients sent, and who sent it
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        # Autocommit: add() takes the write lock itself (BEGIN IMMEDIATE) before it reads the bounds.
        connection = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
        _set_up(connection, create)
        return connection
    except (sqlite3.Error, OSError) as err:
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
        sender: str = UNKNOWN_SENDER,
        limits: Limits = Limits(),
    ) -> int:
        """Store one correction from `sender`; returns its id.

        Raises:
            StoreFull: the store is at `limits.max_rows` or `limits.max_bytes`.
            SenderLimit: the sender is at its own bounds or rate.
            sqlite3.Error: the file cannot be written.

        The write lock is taken before the bounds are read (BEGIN IMMEDIATE), so they are exact and a
        writer waits for another worker's write. A deferred transaction would start as a read, and
        SQLite cannot upgrade a read whose snapshot another worker has since changed: it answers
        "database is locked" at once instead of waiting."""
        now = datetime.now(timezone.utc)
        created = now.isoformat(timespec="seconds")
        size = len(text.encode()) + len(label.encode())
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            _check(connection, sender, size, now, limits)
            cursor = connection.execute(
                "INSERT INTO feedback (created, text, label, predicted, model, served_model, sender) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (created, text, label, predicted, model, served_model, sender),
            )
            connection.execute(
                "INSERT INTO senders VALUES (?, 1, ?) ON CONFLICT (sender) DO UPDATE SET rows = rows + 1, "
                "bytes = bytes + excluded.bytes",
                (sender, size),
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


def _check(connection: sqlite3.Connection, sender: str, size: int, now: datetime, limits: Limits) -> None:
    """Raise StoreFull or SenderLimit when one more correction of `size` bytes would pass a bound."""
    if limits.max_rows and _last_id(connection) >= limits.max_rows:
        raise StoreFull(f"{limits.max_rows} corrections")
    if limits.max_bytes:
        pages = (
            connection.execute("PRAGMA page_count").fetchone()[0] * connection.execute("PRAGMA page_size").fetchone()[0]
        )
        if pages + size > limits.max_bytes:
            raise StoreFull(f"{limits.max_bytes} bytes")
    row = connection.execute("SELECT rows, bytes FROM senders WHERE sender = ?", (sender,)).fetchone()
    rows, sent = row if row else (0, 0)
    if limits.sender_rows and rows >= limits.sender_rows:
        raise SenderLimit(f"this sender has stored its {limits.sender_rows} corrections")
    if limits.sender_bytes and sent + size > limits.sender_bytes:
        raise SenderLimit(f"this sender has stored its {limits.sender_bytes} bytes of corrections")
    if limits.sender_per_minute:
        since = (now - RATE_WINDOW).isoformat(timespec="seconds")
        recent = connection.execute(
            "SELECT created FROM feedback WHERE sender = ? AND created > ? ORDER BY created LIMIT ?",
            (sender, since, limits.sender_per_minute),
        ).fetchall()
        if len(recent) >= limits.sender_per_minute:
            oldest = datetime.fromisoformat(recent[0][0])
            wait = max(1, int((oldest + RATE_WINDOW - now).total_seconds()) + 1)
            raise SenderLimit(f"more than {limits.sender_per_minute} corrections a minute from this sender", wait)


EXPORT_COLUMNS = ("text", "label", "created", "predicted", "model", "sender")


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


def _columns(connection: sqlite3.Connection, names: Iterable[str]) -> str:
    """A SELECT list of `names`; a store written before senders were recorded reads as one unknown sender."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(feedback)")}
    return ", ".join(name if name in present else f"'{UNKNOWN_SENDER}' AS {name}" for name in names)


@dataclass
class Decided:
    """The label each corrected text gets, by its senders' votes (see `decide`)."""

    labels: list[tuple[str, str]]  # (text, label), in the order of each text's latest correction
    conflicts: list[dict]  # {"text", "votes": {label: senders}}: a tie, left out
    corrections: int  # rows read
    senders: int  # distinct senders among them


def decide(rows: Iterable[tuple[str, str, str]]) -> Decided:
    """Each text's label from its corrections, (text, label, sender) oldest first: a sender's
    latest correction of a text is its one vote (a sender who corrects itself changes its vote, a
    sender who repeats itself does not gain votes); the label with the most votes wins; a tie
    between labels is a conflict, and the text is left out rather than guessed."""
    votes: dict[str, dict[str, str]] = {}
    latest: dict[str, int] = {}
    count = 0
    for count, (text, label, sender) in enumerate(rows, start=1):
        votes.setdefault(text, {})[sender] = label
        latest[text] = count
    decided, conflicts = [], []
    for text in sorted(votes, key=latest.__getitem__):
        ranked = Counter(votes[text].values()).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            conflicts.append({"text": text, "votes": dict(ranked)})
        else:
            decided.append((text, ranked[0][0]))
    senders = len({sender for by_sender in votes.values() for sender in by_sender})
    return Decided(decided, conflicts, count, senders)


def corrections(path: str | os.PathLike) -> Decided:
    """The stored corrections, decided per text by its senders (`decide`)."""
    with reading(path) as connection:
        rows = connection.execute(
            f"SELECT {_columns(connection, ('text', 'label', 'sender'))} FROM feedback ORDER BY id"
        )
        return decide((str(text), str(label), str(sender)) for text, label, sender in rows)


def _export(path: str | os.PathLike, f) -> int:
    """Every correction, oldest first, as CSV rows on `f`; returns how many."""
    with reading(path) as connection:  # first: a missing store writes nothing, not even the header
        writer = csv.writer(f)
        writer.writerow(EXPORT_COLUMNS)
        written = 0
        for row in connection.execute(f"SELECT {_columns(connection, EXPORT_COLUMNS)} FROM feedback ORDER BY id"):
            # Client-sent cells: never a formula when the export is opened in a spreadsheet.
            writer.writerow(["" if value is None else spreadsheet_safe(str(value)) for value in row])
            written += 1
    return written


def export_csv(path: str | os.PathLike, output: str | os.PathLike) -> int:
    """Write every correction (all of them, oldest first) as a training CSV, to `output` or, for
    "-", to stdout; returns the rows written. Columns: text, label (what `make train` reads), then
    created, predicted, model, sender (training decides by it, as from the store). Cells that a
    spreadsheet would run as formulas start with ' (training reads them back as they were sent)."""
    if str(output) == "-":
        return _export(path, sys.stdout)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text_file(output, newline="") as f:  # a store that cannot be read, or Ctrl-C: no half file
        return _export(path, f)


def exported_rows(path: str | os.PathLike) -> list[tuple[str, str, str]] | None:
    """(text, label, sender) of a CSV that `export_csv` wrote, oldest first; None when the file
    has no sender column (not an export: the caller reads it as training data)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"text", "label", "sender"} <= set(reader.fieldnames or ()):
                return None
            return [
                (spreadsheet_unsafe(row["text"] or ""), spreadsheet_unsafe(row["label"] or ""), row["sender"] or "")
                for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FeedbackError(f"cannot read the feedback export {path}: {err}") from None


def summary(path: str | os.PathLike) -> dict:
    """What `feedback stats` prints: corrections, senders, texts decided and in conflict, labels,
    and the senders with the most corrections."""
    decided = corrections(path)
    with reading(path) as connection:
        top = connection.execute(
            f"SELECT {_columns(connection, ('sender',))}, COUNT(*) FROM feedback GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
        ).fetchall()
    return {
        "corrections": decided.corrections,
        "senders": decided.senders,
        "texts": len(decided.labels) + len(decided.conflicts),
        "conflicts": decided.conflicts,
        "labels": dict(Counter(label for _, label in decided.labels).most_common()),
        "top_senders": {str(sender) or "(unknown)": int(n) for sender, n in top},
    }


def label_counts(path: str | os.PathLike) -> dict[str, int]:
    with reading(path) as connection:
        rows = connection.execute("SELECT label, COUNT(*) FROM feedback GROUP BY label ORDER BY 2 DESC").fetchall()
    return {str(label): int(n) for label, n in rows}
