"""The errors a user can fix: the CLI prints their message and exits 2 instead of a traceback.

They live here, at the bottom of the core: this module imports nothing of bertclf (every other
module may import it), and nothing heavy, so a serving-only install (no pandas, TensorFlow or
requests) can still name them all.
"""


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message says which and how to fix it."""


class RegistryError(RuntimeError):
    """A model folder or the latest-model pointer is missing or unusable."""


class UnsafeModelError(ValueError):
    """A model folder holds something that could execute code, block or exhaust the loader."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found, fetched or used; the message says what to do instead."""


class DataError(ValueError):
    """The data cannot be used as given; the message names the file, row or column and the fix."""


class DownloadError(RuntimeError):
    """A download failed; the message names the URL and how to get the file without us."""


USER_ERRORS = (CheckpointError, ConfigError, DataError, DownloadError, RegistryError, UnsafeModelError)
# What `pip install bertclf` leaves out: the `train` extra (see pyproject.toml).
TRAINING_MODULES = frozenset(
    [
        "tensorflow",
        "keras",
        "keras_hub",
        "tensorflow_text",
        "safetensors",
        "pandas",
        "sklearn",
        "matplotlib",
        "tensorboard",
        "requests",
    ]
)


def training_install_missing(err: ModuleNotFoundError) -> str | None:
    """The message for a command that needs the training install, when `err` says it is missing."""
    if (err.name or "").partition(".")[0] not in TRAINING_MODULES:
        return None
    return (
        f"this command needs the training install (no module {err.name!r} here): "
        "`pip install 'bertclf[train]'` (`make install` does it); a serving-only install runs "
        "`serve` and `predict` on folders that have serving/model.onnx"
    )
