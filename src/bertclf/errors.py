"""The errors a user can fix: the CLI prints their message and exits 2 instead of a traceback."""

from bertclf.checkpoints import CheckpointError
from bertclf.config import ConfigError
from bertclf.data import DataError
from bertclf.download import DownloadError
from bertclf.registry import RegistryError
from bertclf.safety import UnsafeModelError

USER_ERRORS = (CheckpointError, ConfigError, DataError, DownloadError, RegistryError, UnsafeModelError)
