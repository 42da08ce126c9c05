"""A model folder is data, never code: refuse presets whose configs could run anything on load."""

import json
from pathlib import Path

# Keras reconstructs objects from "module" + "class_name" in these JSON files. Only KerasHub and
# Keras classes may appear; Lambda layers and serialized functions carry Python code.
CONFIG_FILES = ("config.json", "task.json", "preprocessor.json", "tokenizer.json", "metadata.json")
ALLOWED_MODULE_PREFIXES = ("keras_hub.", "keras.", "keras")
ALLOWED_REGISTERED_PREFIXES = ("keras_hub>", "keras>")
CODE_CLASS_NAMES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__", "function", "__typespec__"}
# Formats that execute code or unpickle when loaded; their mere presence is refused.
CODE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".keras", ".pb", ".npy", ".npz", ".py")


class UnsafeModelError(ValueError):
    """A model folder holds something that could execute code when loaded."""


def _walk(node, where):
    if isinstance(node, dict):
        if "class_name" in node:
            name = node.get("class_name")
            module = node.get("module")
            registered = node.get("registered_name")
            if name in CODE_CLASS_NAMES:
                raise UnsafeModelError(f"{where}: refuses to load {name!r}, which carries code")
            if module is not None and not (isinstance(module, str) and module.startswith(ALLOWED_MODULE_PREFIXES)):
                raise UnsafeModelError(f"{where}: refuses module {module!r}; only keras and keras_hub classes load")
            if registered not in (None, name) and not (
                isinstance(registered, str) and registered.startswith(ALLOWED_REGISTERED_PREFIXES)
            ):
                raise UnsafeModelError(f"{where}: refuses registered class {registered!r}")
        for value in node.values():
            _walk(value, where)
    elif isinstance(node, list):
        for value in node:
            _walk(value, where)


def check_preset_is_data(folder) -> list[str]:
    """Raise UnsafeModelError unless every config in a KerasHub preset folder names only
    Keras/KerasHub classes and no file in it is in a code-carrying format.

    Returns:
        the names of the config files it read.
    """
    folder = Path(folder)
    checked = []
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise UnsafeModelError(f"{path}: symbolic links are refused in a model folder")
        if path.suffix.lower() in CODE_SUFFIXES:
            raise UnsafeModelError(f"{path}: refuses {path.suffix} files, a format that can run code on load")
    for name in CONFIG_FILES:
        path = folder / name
        if path.is_file():
            try:
                _walk(json.loads(path.read_text(encoding="utf-8")), path)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise UnsafeModelError(f"{path}: not valid JSON ({err})") from None
            checked.append(name)
    return checked
