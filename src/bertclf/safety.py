"""A model folder is data, never code, and hostile until checked: refuse anything that could run
code, block a reader, or exhaust memory when it is loaded."""

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertclf.errors import UnsafeModelError

# Keras reconstructs objects from "module" + "class_name" in these JSON files.
CONFIG_FILES = ("config.json", "task.json", "preprocessor.json", "tokenizer.json", "metadata.json")
# The classes a KerasHub preset or a trained folder of ours really names; nothing else loads.
FAMILIES = ("Bert", "Albert", "DistilBert")
ALLOWED_CLASSES = frozenset(
    [
        f"{family}{part}"
        for family in FAMILIES
        for part in ("Backbone", "TextClassifier", "TextClassifierPreprocessor", "Tokenizer")
    ]
    + ["DTypePolicy", "FloatDTypePolicy"]
)
# Formats that execute code or unpickle when loaded; their mere presence is refused.
CODE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".keras", ".pb", ".npy", ".npz", ".py")
# Our configs are a few KB and nest a handful of levels; the vocabulary lives in assets/.
MAX_JSON_BYTES = 8 << 20
MAX_JSON_DEPTH = 64
# The largest published checkpoint we fine-tune (BERT-Large) exports about 1.4 GB.
MAX_FOLDER_BYTES = 8 << 30


def _allowed_module(module: Any) -> bool:
    return isinstance(module, str) and (
        module == "keras" or module.startswith("keras.") or module.startswith("keras_hub.")
    )


def _walk(node: Any, where: Path) -> None:
    """Refuse any object spec that names a class, module or registration outside the allowlist
    (the depth is already bounded: _read_json checked it)."""
    if isinstance(node, dict):
        if "class_name" in node:
            name, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
            if not isinstance(name, str) or name not in ALLOWED_CLASSES:
                raise UnsafeModelError(
                    f"{where}: refuses to load class {name!r}; only the BERT, ALBERT and DistilBERT classes of "
                    "KerasHub load"
                )
            if module is not None and not _allowed_module(module):
                raise UnsafeModelError(f"{where}: refuses module {module!r}; only keras and keras_hub classes load")
            if registered not in (None, name, f"keras_hub>{name}", f"keras>{name}"):
                raise UnsafeModelError(f"{where}: refuses registered class {registered!r}")
        for value in node.values():
            _walk(value, where)
    elif isinstance(node, list):
        for value in node:
            _walk(value, where)


def _read_json(path: Path, size: int) -> Any:
    if size > MAX_JSON_BYTES:
        raise UnsafeModelError(f"{path}: {size} bytes, more than the {MAX_JSON_BYTES} a model's JSON file may have")
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnsafeModelError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise UnsafeModelError(f"{path}: nested too deeply to be a model's JSON file") from None
    _depth_ok(value, path)
    return value


def _depth_ok(node: Any, path: Path, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise UnsafeModelError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        _depth_ok(child, path, depth + 1)


def _entries(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry below `folder` with its own (not followed) status, folders first."""
    stack = [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as listing:
            for entry in listing:
                info = entry.stat(follow_symlinks=False)
                yield Path(entry.path), info
                if stat.S_ISDIR(info.st_mode):
                    stack.append(Path(entry.path))


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_preset_is_data(folder: str | os.PathLike, max_folder_bytes: int = MAX_FOLDER_BYTES) -> list[str]:
    """Raise UnsafeModelError unless a model or preset folder is plain data:

    - only regular files and folders: no links of any kind, FIFOs, devices or sockets (a FIFO
      named labels.json would block its reader for good; a link reaches outside the folder);
    - no file in a code-carrying format (pickle, SavedModel, .keras, .py, ...);
    - every *.json well formed, at most MAX_JSON_BYTES and MAX_JSON_DEPTH deep; the Keras configs
      name only the KerasHub BERT/ALBERT/DistilBERT classes, from keras or keras_hub modules;
    - at most `max_folder_bytes` in all.

    Returns:
        the names of the Keras config files it read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UnsafeModelError(f"{folder}: not a folder")
    total, checked = 0, []
    for path, info in _entries(folder):
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeModelError(
                f"{path}: {_kind(info.st_mode)}; a model folder holds only regular files and folders"
            )
        if info.st_nlink > 1:
            raise UnsafeModelError(f"{path}: a hard link; a model folder holds only files of its own")
        if path.suffix.lower() in CODE_SUFFIXES:
            raise UnsafeModelError(f"{path}: refuses {path.suffix} files, a format that can run code on load")
        total += info.st_size
        if total > max_folder_bytes:
            raise UnsafeModelError(f"{folder}: more than {max_folder_bytes} bytes; not a model folder we load")
        if path.suffix.lower() == ".json":
            value = _read_json(path, info.st_size)
            if path.parent == folder and path.name in CONFIG_FILES:
                _walk(value, path)
                checked.append(path.name)
    return sorted(checked, key=CONFIG_FILES.index)
