"""Trained-model folders: timestamped, written whole or not at all, and the latest_model_config.json
pointer that serving reads."""

import contextlib
import json
import os
import re
import shutil
import uuid
from datetime import datetime
from pathlib import Path

LATEST_FILE = "latest_model_config.json"
MODEL_CONFIG_FILE = "model_config.json"
INCOMPLETE_PREFIX = ".incomplete-"


class RegistryError(RuntimeError):
    """A model folder or the latest-model pointer is missing or unusable."""


def write_json_atomic(path, value):
    """Write JSON so a reader sees the old file or the new one, never half of either."""
    path = Path(path)
    # A unique sibling name opened with "x": created with the user's umask (mkstemp would force 0600).
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            json.dump(value, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def display_name(family: str, created: datetime, short_id: str) -> str:
    """The model name the API reports, in the seed's shape: 'BERT 2020-01-06 22:06:23 4b4e44b2'."""
    return f"{family} {created:%Y-%m-%d %H:%M:%S} {short_id}"


@contextlib.contextmanager
def run_folder(models_dir, model_name: str, created: datetime):
    """Yield a temporary folder under models/trained/; rename it to its final
    `<YYYYmmdd-HHMMSS>_<model>` name only if the block completes. On any error or interrupt the
    temporary folder is removed and nothing else changes.

    Yields:
        (working folder, final folder) as Paths.
    """
    trained = Path(models_dir) / "trained"
    trained.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.") or "model"
    final = trained / f"{created:%Y%m%d-%H%M%S}_{slug}"
    suffix = 1
    while final.exists():
        suffix += 1
        final = trained / f"{created:%Y%m%d-%H%M%S}_{slug}-{suffix}"
    work = trained / f"{INCOMPLETE_PREFIX}{final.name}"
    work.mkdir()
    try:
        yield work, final
        os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def update_latest(models_dir, model_folder, model_config: dict):
    """Point models/latest_model_config.json at a finished model folder (atomically).

    The pointer holds the folder relative to models/ plus the model's config, so a person can pin a
    model by editing `model_dir`.
    """
    models_dir = Path(models_dir)
    relative = Path(os.path.relpath(Path(model_folder).resolve(), models_dir.resolve())).as_posix()
    write_json_atomic(models_dir / LATEST_FILE, {"model_dir": relative, **model_config})


def latest_model_folder(models_dir) -> Path:
    """The folder models/latest_model_config.json names; it must lie inside models/."""
    models_dir = Path(models_dir)
    pointer = models_dir / LATEST_FILE
    if not pointer.is_file():
        raise RegistryError(f"{pointer} does not exist: train a model first (`make train`).")
    try:
        value = json.loads(pointer.read_text(encoding="utf-8"))
        relative = value["model_dir"]
        if not isinstance(relative, str):
            raise TypeError
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise RegistryError(
            f'{pointer} is not valid: it must be JSON with "model_dir": "trained/<folder>".'
        ) from None
    return resolve_model_folder(models_dir, relative)


def resolve_model_folder(models_dir, folder) -> Path:
    """A model folder given relative to models/ (or absolute), refused if it escapes models/."""
    root = Path(models_dir).resolve()
    path = (root / folder).resolve()
    if root not in path.parents:
        raise RegistryError(f"model folder {folder!r} lies outside {root}; models are only loaded from there.")
    if not (path / MODEL_CONFIG_FILE).is_file():
        raise RegistryError(f"{path} is not a trained model folder (no {MODEL_CONFIG_FILE}).")
    return path
