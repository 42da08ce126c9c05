"""File helpers shared by every stage: hashes, JSON objects, and writes that appear whole or not at all."""

import contextlib
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeGuard

from bertclf.errors import DataError


def is_finite_number(value: Any) -> TypeGuard[int | float]:
    """A JSON number that is a real number: not a bool (JSON true is no number), NaN or infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def existing_file(path: str | os.PathLike, option: str) -> Path:
    """`path` as a Path; DataError naming it and the setting to fix (`option`=) when no such file exists."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check {option}= (and that you run from the project folder).")
    return path


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError) -> Any:
    """A JSON file's value; a missing, unreadable, malformed or over-deep file raises `error` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise error(f"{path}: not a readable JSON file ({err})") from None


def read_json_object(path: str | os.PathLike, error: type[Exception] = ValueError) -> dict:
    """A JSON file that must hold an object; anything else raises `error` naming the file."""
    value = read_json(path, error)
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object")
    return value


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP "CSV
# injection"); one starting with ' is escaped too, so that unescaping is exact.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell that a spreadsheet shows as text and never runs: a leading ' where the cell starts
    like a formula (or with '). `spreadsheet_unsafe` gives the cell back."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def spreadsheet_unsafe(cell: str) -> str:
    """The cell `spreadsheet_safe` was given."""
    return cell[1:] if cell.startswith("'") else cell


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside `path` for a file to be renamed onto it. Open it with "x": a
    name that already exists (a symlink someone planted, say) fails instead of being followed."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextlib.contextmanager
def _atomic(path: str | os.PathLike, mode: str, **options) -> Iterator[IO]:
    """A fresh sibling file opened with `mode` ("x...": created with the user's umask, as mkstemp
    would not, and never through a symlink), renamed onto `path` when the block completes and
    removed when it fails (or is interrupted): readers see the old file or the whole new one."""
    tmp = temporary_sibling(path)
    try:
        with open(tmp, mode, **options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_text_file(path: str | os.PathLike, newline: str | None = None) -> contextlib.AbstractContextManager[IO[str]]:
    """A UTF-8 text file to write into, that appears at `path` whole or not at all."""
    return _atomic(path, "x", encoding="utf-8", newline=newline)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so a reader sees the old file or the new one, never half of either."""
    with _atomic(path, "xb") as f:
        f.write(data)


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of either."""
    write_bytes_atomic(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


@contextlib.contextmanager
def staged_folder(dest: Path, replace: bool = True, prefix: str = ".") -> Iterator[Path]:
    """Yield an empty sibling folder to fill; when the block completes it is renamed to `dest`,
    when it fails (or is interrupted) it is removed. Readers see no folder or the old one, then the
    complete new one, never a half-written one.

    Args:
        dest: the folder to create.
        replace: an existing `dest` is replaced whole (True) or the rename fails (False).
        prefix: start of the temporary folder's name (hidden by default).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A unique name, so two runs never share a half-written folder; mkdir (not mkdtemp, which
    # forces 0700) gives the user's umask, so a served model folder is readable as usual.
    staging = dest.parent / f"{prefix}{dest.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        if replace and dest.exists():
            shutil.rmtree(dest)
        os.rename(staging, dest)  # fails on an existing non-empty dest: never merge two folders
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
