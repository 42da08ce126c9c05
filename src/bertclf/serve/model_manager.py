"""Which model a worker serves: loaded after the fork, warmed, and hot-swapped when the pointer changes."""

import contextlib
import ctypes
import gc
import json
import logging
import threading
import time
from pathlib import Path, PurePath

from bertclf.errors import RegistryError
from bertclf.registry import chosen_model_folder, last_good_model_folder, record_last_good

log = logging.getLogger(__name__)

WARMUP_TEXTS = ["warm up", "a slightly longer text to warm up the model before it serves requests"]


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc's malloc_trim). A load parses the graph
    and checks it before the runtime copies the weights, and a swap frees the old model: glibc keeps
    those pages mapped, and the worker's RSS with them (measured: bf16 358 -> 340 MB after a load).
    Nothing on other C libraries."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ModelManager:
    """Holds the current Predictor and replaces it, whole, when a different model is named.

    The served folder is `model_dir` when set (pinned), else the one models/latest_model_config.json
    names. A background thread checks every `reload_interval` seconds; a new model is loaded and
    warmed beside the old one, then swapped in with one reference assignment, so a request sees the
    old model or the new one, never half of either. A pointer that is half-written, names a missing
    or broken folder, or points outside models/ leaves the old model serving; the error is logged
    once and reported by `status()`.

    Args:
        config: a ServeConfig.
        load: callable(folder) -> Predictor (injected so tests can count loads).
        on_swap: called with (new predictor, previous predictor or None) after each swap.
        on_failure: called once per distinct load error.
    """

    def __init__(self, config, load, on_swap=None, on_failure=None):
        self.config = config
        self.load = load
        self.on_swap = on_swap or (lambda new, old: None)
        self.on_failure = on_failure or (lambda: None)
        self.predictor = None
        self.folder = None
        self.last_error = None
        self.reload_failures = 0
        self.reloads = 0
        self._stop = threading.Event()
        self._checking = threading.Lock()
        self._thread = None

    # === What should be served ===
    def wanted_folder(self) -> Path:
        """The folder the settings name now (raises RegistryError if they name nothing usable)."""
        return chosen_model_folder(self.config.models_dir, self.config.model_dir)

    def _folder_to_serve(self) -> Path:
        """The wanted folder; for a worker serving nothing yet whose pointer is broken, the last
        model a worker of this server loaded from it (recorded beside the pointer)."""
        try:
            return self.wanted_folder()
        except RegistryError as err:
            if self.predictor is not None or self.config.model_dir:
                raise
            try:
                fallback = last_good_model_folder(self.config.models_dir)
            except RegistryError:
                raise err from None
            if fallback != self.folder:
                log.warning("%s; serving the last model that loaded from it, %s", err, fallback)
            return fallback

    # === Loading ===
    def check_once(self):
        """Load and swap in the wanted model if it differs from the served one. Returns True on a swap."""
        with self._checking:  # one check at a time (the watcher's, or a caller's such as a test)
            swapped = self._check()
        if swapped:
            # A Keras model is a web of reference cycles: free the old one now, not at some later
            # collection (measured: without this a worker grew ~10 MB per swap for a while).
            gc.collect()
            release_freed_memory()
        return swapped

    def _check(self):
        folder = None
        try:
            folder = self._folder_to_serve()
            if folder == self.folder:
                return False
            started = time.perf_counter()
            predictor = self.load(folder)
            predictor.predict(WARMUP_TEXTS)  # first calls trace the graph; users should not pay for it
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            if folder is not None and str(folder) not in message:  # e.g. h5py's errors name no file
                message = f"{folder}: {message}"
            if message != self.last_error:
                log.error(
                    "model not (re)loaded, %s: %s",
                    "still serving " + str(self.folder) if self.folder else "nothing to serve yet",
                    message,
                )
                self.reload_failures += 1
                self.on_failure()
            self.last_error = message
            return False
        previous = self.predictor
        self.last_error = None
        self.reloads += 1
        self.predictor, self.folder = predictor, folder  # the swap: readers take one reference
        self.on_swap(predictor, previous)
        if not self.config.model_dir:
            record_last_good(self.config.models_dir, folder)
        log.info(
            "serving %s from %s in %s, %s (loaded and warmed in %.1f s)",
            predictor.name,
            folder,
            getattr(predictor, "precision", "?"),
            getattr(predictor, "precision_reason", "?"),
            time.perf_counter() - started,
        )
        return True

    def start(self):
        """Load in the background and keep watching; returns at once so /health answers during loading."""
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.config.reload_interval)

    def stop(self):
        """Stop watching (the current model stays loaded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # === Reporting ===
    @property
    def ready(self) -> bool:
        return self.predictor is not None

    def public_error(self) -> str | None:
        """The last load error, with the models folder's host path left out."""
        root = str(Path(self.config.models_dir).resolve())
        return self.last_error.replace(root, "<models_dir>") if self.last_error else None

    def status(self) -> dict:
        """What /model reports: the folder (relative to models/), the model's config and labels,
        and any reload error. No host path: a client learns nothing of the server's file system."""
        predictor = self.predictor
        root = Path(self.config.models_dir).resolve()
        folder = None
        if self.folder is not None:
            folder = self.folder.relative_to(root).as_posix() if root in self.folder.parents else self.folder.name
        return {
            "ready": predictor is not None,
            "model": predictor.name if predictor else None,
            "model_dir": folder,
            "pinned": bool(self.config.model_dir),
            "labels": predictor.classes if predictor else None,
            "engine": getattr(predictor, "engine", None),
            "precision": getattr(predictor, "precision", None),
            "precision_reason": getattr(predictor, "precision_reason", None),
            "runtime": getattr(predictor, "runtime", None),
            "config": public_config(predictor.config) if predictor else None,
            "min_confidence": getattr(predictor, "min_confidence", None),
            "embedding_dim": getattr(predictor, "embedding_dim", None),
            "golden": getattr(predictor, "golden", None),
            "last_error": self.public_error(),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
        }


# Settings that hold paths of the machine that trained the model: /model shows their file names.
PATH_SETTINGS = ("data", "validation_data", "test_data", "models_dir", "model", "feedback_db")


def public_config(config: dict) -> dict:
    """A model_config.json without host paths: data files and path settings by file name only."""
    public = json.loads(json.dumps(config))
    for entry in (public.get("data") or {}).values():
        if isinstance(entry, dict):
            for key in ("file", "given", "db"):
                if isinstance(entry.get(key), str):
                    entry[key] = PurePath(entry[key]).name
    settings = public.get("hyperparameters") or {}
    for key in PATH_SETTINGS:
        if isinstance(settings.get(key), str):
            settings[key] = PurePath(settings[key]).name
    return public
