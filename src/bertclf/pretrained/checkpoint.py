"""What every checkpoint source resolves to: a local folder KerasHub can load, and what we know of it."""

from dataclasses import dataclass
from pathlib import Path

from bertclf.config import default_max_learn_rate
from bertclf.errors import CheckpointError

__all__ = ["CatalogEntry", "Checkpoint", "CheckpointError"]


@dataclass(frozen=True)
class Checkpoint:
    """A local folder KerasHub can load (a Hugging Face-format folder or a KerasHub preset)."""

    name: str  # short name used in export folder names
    path: Path
    family: str  # BERT, ALBERT or DistilBERT
    max_sequence_length: int
    num_layers: int

    @property
    def learn_rate(self) -> float:
        """The max_learn_rate this checkpoint gets by default."""
        return default_max_learn_rate(self.family, self.num_layers)


@dataclass(frozen=True)
class CatalogEntry:
    """One named checkpoint, as `python -m bertclf models` lists it."""

    name: str
    family: str
    cased: bool
    size: str  # download size
    cached: bool
    description: str
