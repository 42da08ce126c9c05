"""Shared file helpers: folders and JSON files appear whole or not at all, with the user's umask."""

import hashlib
import json
import os

import pytest

from bertclf.files import read_json_object, sha256_of, staged_folder, write_json_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test, and restore it."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_json_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_json_atomic(tmp_path / "x.json", {"a": [1, "é"]})
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == mode
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == {"a": [1, "é"]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left


@pytest.mark.parametrize("mask, mode", [(0o022, 0o755), (0o077, 0o700)])
def test_staged_folder_appears_whole_with_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    dest = tmp_path / "out"
    with staged_folder(dest) as staging:
        (staging / "a.txt").write_text("a")
        assert not dest.exists(), "nothing at the final name until the block ends"
    assert [p.name for p in dest.iterdir()] == ["a.txt"]
    assert dest.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_folder_replaces_whole_or_keeps_the_old_one(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_folder(dest) as staging:
        (staging / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in dest.iterdir()] == ["old.txt"]
    with staged_folder(dest) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    with pytest.raises(OSError), staged_folder(dest, replace=False) as staging:
        (staging / "other.txt").write_text("never merged")
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_sha256_and_json_objects(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 3_000_000)
    assert sha256_of(tmp_path / "f") == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    (tmp_path / "o.json").write_text('{"a": 1}')
    assert read_json_object(tmp_path / "o.json") == {"a": 1}
    for bad, message in (
        ("[1]", "expected a JSON object"),
        ("{", "not a readable JSON file"),
        ("[" * 100_000, "not a readable JSON file"),
    ):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(LookupError, match=rf"bad.json: {message}"):
            read_json_object(tmp_path / "bad.json", LookupError)


def test_atomic_files_never_write_through_a_planted_symlink(tmp_path, monkeypatch):
    import uuid

    from bertclf import files
    from bertclf.feedback import FeedbackStore, export_csv
    from bertclf.inference.labelfile import Writer

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    # The names the old code used (".<name>.<pid>.tmp"), and the next name the new code would pick.
    fixed = uuid.UUID(int=1)
    monkeypatch.setattr(files.uuid, "uuid4", lambda: fixed)
    for name in ("out.csv", "labelled.csv", "feedback.csv"):
        (tmp_path / f".{name}.{os.getpid()}.tmp").symlink_to(victim)
    (tmp_path / f".out.csv.{fixed.hex}.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError), files.atomic_text_file(tmp_path / "out.csv") as f:
        f.write("x")
    monkeypatch.undo()
    writer = Writer(tmp_path / "labelled.csv", "csv", ["text", "prediction"])
    writer.write({"text": "a", "prediction": "b"})
    writer.commit()
    store = tmp_path / "feedback.sqlite3"
    FeedbackStore(store).add("a", "b", None, None, None)
    assert export_csv(store, tmp_path / "feedback.csv") == 1
    assert victim.read_text() == "keep" and not (tmp_path / "out.csv").exists()
    assert (tmp_path / "labelled.csv").read_text().splitlines() == ["text,prediction", "a,b"]
