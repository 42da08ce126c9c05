"""Trained-model folders: timestamped, written whole or not at all, what they record
(model_config.json, labels.json), and the latest_model_config.json pointer that serving reads."""

import contextlib
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bertclf.errors import RegistryError
from bertclf.files import read_json, read_json_object, staged_folder, write_json_atomic

LATEST_FILE = "latest_model_config.json"
# Beside the pointer: the last folder the server loaded from it, for a worker that (re)starts while
# the pointer is broken.
LAST_GOOD_FILE = ".last_good_model.json"
MODEL_CONFIG_FILE = "model_config.json"
LABELS_FILE = "labels.json"
INCOMPLETE_PREFIX = ".incomplete-"


class NoEmbeddings(RegistryError):
    """The model's serving graph has no embedding output (exported before it had one)."""


def display_name(family: str, created: datetime, short_id: str) -> str:
    """The model name the API reports, in the seed's shape: 'BERT 2020-01-06 22:06:23 4b4e44b2'."""
    return f"{family} {created:%Y-%m-%d %H:%M:%S} {short_id}"


def folder_slug(model_name: str) -> str:
    """A model name as a safe part of a folder name: runs of anything but ASCII letters, digits, `.`,
    `_` and `-` become one `-`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.") or "model"


@contextlib.contextmanager
def run_folder(models_dir: str | Path, model_name: str, created: datetime) -> Iterator[tuple[Path, Path]]:
    """Yield a temporary folder under models/trained/; it gets its final `<YYYYmmdd-HHMMSS>_<model>`
    name only if the block completes. On any error or interrupt the temporary folder is removed and
    nothing else changes.

    Yields:
        (working folder, final folder) as Paths.
    """
    trained = Path(models_dir) / "trained"
    trained.mkdir(parents=True, exist_ok=True)
    slug = folder_slug(model_name)
    final = trained / f"{created:%Y%m%d-%H%M%S}_{slug}"
    suffix = 1
    while final.exists():
        suffix += 1
        final = trained / f"{created:%Y%m%d-%H%M%S}_{slug}-{suffix}"
    with staged_folder(final, replace=False, prefix=INCOMPLETE_PREFIX) as work:
        yield work, final


def model_record(
    *,
    short_id: str,
    created: datetime,
    family: str,
    base_model: str,
    hyperparameters: dict[str, Any],
    classes: list[str],
    data: dict[str, Any],
    training: dict[str, Any],
    metrics: dict[str, Any],
    versions: dict[str, str],
    abstain: dict[str, Any] | None = None,
    multi_label: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of model_config.json: everything needed to know, rebuild and re-evaluate a model.

    Args:
        data: the data files ({"file", "sha256", "given"} per role) and the split sizes.
        training: epochs, timing and the loss/accuracy history.
        metrics: the test metrics (accuracy, macro_f1, and the baseline's).
        abstain: the threshold below which the model answers null, and what it gave (abstain.py).
        multi_label: a multi-label model's label separator and per-label thresholds (multilabel.py).
    """
    return {
        "id": short_id,
        "name": display_name(family, created, short_id),
        "family": family,
        "created": created.isoformat(timespec="seconds"),
        "base_model": base_model,
        "max_seq_len": hyperparameters["max_seq_len"],
        "classes": classes,
        "hyperparameters": hyperparameters,
        "data": data,
        "training": training,
        "metrics": metrics,
        "abstain": abstain,
        "multi_label": multi_label,
        "versions": versions,
    }


def save_labels(classes: list[str], path: str | Path) -> None:
    """Write the class names, in the model's output order, as a JSON list."""
    Path(path).write_text(json.dumps(list(classes), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_labels(path: str | Path) -> list[str]:
    """Read a labels.json written by save_labels; refuses anything but a list of strings."""
    classes = read_json(path, RegistryError)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(classes) < 2:
        raise RegistryError(f"{path}: expected a JSON list of at least two class names")
    return classes


def update_latest(models_dir: str | Path, model_folder: str | Path, model_config: dict[str, Any]) -> None:
    """Point models/latest_model_config.json at a finished model folder (atomically).

    The pointer holds the folder relative to models/ plus the model's config, so a person can pin a
    model by editing `model_dir`.
    """
    write_json_atomic(
        Path(models_dir) / LATEST_FILE, {"model_dir": _relative(models_dir, model_folder), **model_config}
    )


def latest_model_folder(models_dir: str | Path) -> Path:
    """The folder models/latest_model_config.json names (relative to models/); it must lie inside models/."""
    models_dir = Path(models_dir)
    pointer = models_dir / LATEST_FILE
    if not pointer.is_file():
        raise RegistryError(f"{pointer} does not exist: train a model first (`make train`).")
    return _pointed(
        models_dir, pointer, f'{pointer} is not valid: it must be JSON with "model_dir": "trained/<folder>".'
    )


def record_last_good(models_dir: str | Path, model_folder: Path) -> bool:
    """Note `model_folder` as the last model served from the pointer (best effort: a read-only
    models/ keeps its baked-in pointer anyway). Returns whether it was written."""
    try:
        write_json_atomic(Path(models_dir) / LAST_GOOD_FILE, {"model_dir": _relative(models_dir, model_folder)})
    except OSError:
        return False
    return True


def last_good_model_folder(models_dir: str | Path) -> Path:
    """The folder record_last_good noted, checked like the pointer's."""
    pointer = Path(models_dir) / LAST_GOOD_FILE
    return _pointed(Path(models_dir), pointer, f"no usable {pointer}")


def find_model_folder(models_dir: str | Path, model_dir: str | Path) -> Path:
    """The model folder a user named with --model_dir, in any of its documented spellings:
    `models/trained/<folder>` (a path from the current folder, or absolute), `trained/<folder>`
    (inside models_dir) or `<folder>` (inside models_dir/trained). It must lie inside models_dir.

    Raises:
        RegistryError: no such model folder, it lies outside models_dir, or two spellings name
            two different folders.
    """
    root = Path(models_dir).resolve()
    given = Path(model_dir)
    spellings = [given] if given.is_absolute() else [given, root / given, root / "trained" / given]
    found = list(dict.fromkeys(p.resolve() for p in spellings if (p / MODEL_CONFIG_FILE).is_file()))
    inside = [p for p in found if root in p.parents]
    if len(inside) > 1:
        raise RegistryError(
            f"model_dir {str(model_dir)!r} could mean {' or '.join(map(str, inside))}; name the folder "
            f"from the current folder ({os.path.relpath(inside[0])}) or as trained/<folder> inside {root}."
        )
    if inside:
        return inside[0]
    if found:
        raise RegistryError(
            f"model folder {found[0]} lies outside {root}; models are only loaded from there "
            "(set models_dir to the folder holding it)."
        )
    raise RegistryError(
        f"no trained model folder {str(model_dir)!r} (looked for {MODEL_CONFIG_FILE} in "
        f"{', '.join(str(p) for p in spellings)}); `ls {root / 'trained'}` lists the models."
    )


def chosen_model_folder(models_dir: str | Path, model_dir: str | Path | None = None) -> Path:
    """`model_dir` when given (see find_model_folder), else the folder latest_model_config.json names."""
    return find_model_folder(models_dir, model_dir) if model_dir else latest_model_folder(models_dir)


def _relative(models_dir: str | Path, model_folder: str | Path) -> str:
    """A model folder as a pointer names it: relative to models/."""
    return Path(os.path.relpath(Path(model_folder).resolve(), Path(models_dir).resolve())).as_posix()


def _pointed(models_dir: Path, pointer: Path, invalid: str) -> Path:
    """The folder a pointer file's "model_dir" names (relative to models/), checked; `invalid` is
    the message for a pointer that cannot be read."""
    try:
        relative = read_json_object(pointer, RegistryError).get("model_dir")
    except RegistryError:
        relative = None
    if not isinstance(relative, str):
        raise RegistryError(invalid)
    return _checked(models_dir, (models_dir.resolve() / relative).resolve(), relative)


def _checked(models_dir: Path, path: Path, named: str) -> Path:
    root = models_dir.resolve()
    if root not in path.parents:
        raise RegistryError(f"model folder {named!r} lies outside {root}; models are only loaded from there.")
    if not (path / MODEL_CONFIG_FILE).is_file():
        raise RegistryError(f"{path} is not a trained model folder (no {MODEL_CONFIG_FILE}).")
    return path
