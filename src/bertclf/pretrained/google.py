"""Google's published BERT and ALBERT checkpoints by name: download once, verify, unpack, convert
(tf1.py) into a KerasHub preset, and cache; and a user's own unpacked Google checkpoint folder."""

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from bertclf.pretrained import archives
from bertclf.pretrained.checkpoint import CatalogEntry
from bertclf.pretrained.tf1 import GoogleCheckpointError, GoogleFiles, casing_from_name, convert, find_files

log = logging.getLogger(__name__)

CONVERTED = "keras"  # the converted preset, inside the checkpoint's cache folder
# The archive members a conversion needs: configs, vocabularies, weights; nothing else is unpacked.
WANTED = re.compile(
    r"(bert_config\.json|albert_config\.json|vocab\.txt|[\w.-]*\.model|[\w.-]*ckpt[\w.-]*\.(index|data-\d{5}-of-\d{5}))"
)


@dataclass(frozen=True)
class GoogleCheckpoint:
    """One of the checkpoints Google published, by the name the seed README uses."""

    name: str
    url: str
    family: str  # BERT or ALBERT
    cased: bool
    size: str  # download size, for `bertclf models`
    description: str

    @property
    def archive_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_BERT = "https://storage.googleapis.com/bert_models/"
_ALBERT = "https://storage.googleapis.com/albert_models/"
GOOGLE_CHECKPOINTS = {
    c.name.lower(): c
    for c in [
        GoogleCheckpoint(
            "uncased_L-12_H-768_A-12",
            _BERT + "2018_10_18/uncased_L-12_H-768_A-12.zip",
            "BERT",
            False,
            "408 MB",
            "BERT-Base, uncased: 12 layers, hidden 768, 110M parameters",
        ),
        GoogleCheckpoint(
            "uncased_L-24_H-1024_A-16",
            _BERT + "2018_10_18/uncased_L-24_H-1024_A-16.zip",
            "BERT",
            False,
            "1.2 GB",
            "BERT-Large, uncased: 24 layers, hidden 1024, 340M parameters",
        ),
        GoogleCheckpoint(
            "cased_L-12_H-768_A-12",
            _BERT + "2018_10_18/cased_L-12_H-768_A-12.zip",
            "BERT",
            True,
            "404 MB",
            "BERT-Base, cased: 12 layers, hidden 768, 110M parameters",
        ),
        GoogleCheckpoint(
            "cased_L-24_H-1024_A-16",
            _BERT + "2018_10_18/cased_L-24_H-1024_A-16.zip",
            "BERT",
            True,
            "1.2 GB",
            "BERT-Large, cased: 24 layers, hidden 1024, 340M parameters",
        ),
        GoogleCheckpoint(
            "multi_cased_L-12_H-768_A-12",
            _BERT + "2018_11_23/multi_cased_L-12_H-768_A-12.zip",
            "BERT",
            True,
            "662 MB",
            "BERT-Base, multilingual cased: 104 languages, 110M parameters",
        ),
        GoogleCheckpoint(
            "wwm_uncased_L-24_H-1024_A-16",
            _BERT + "2019_05_30/wwm_uncased_L-24_H-1024_A-16.zip",
            "BERT",
            False,
            "1.2 GB",
            "BERT-Large, uncased, whole-word masking: 340M parameters",
        ),
        GoogleCheckpoint(
            "wwm_cased_L-24_H-1024_A-16",
            _BERT + "2019_05_30/wwm_cased_L-24_H-1024_A-16.zip",
            "BERT",
            True,
            "1.2 GB",
            "BERT-Large, cased, whole-word masking: 340M parameters",
        ),
        GoogleCheckpoint(
            "albert_base_v2",
            _ALBERT + "albert_base_v2.tar.gz",
            "ALBERT",
            False,
            "43 MB",
            "ALBERT-Base v2: 12 shared layers, hidden 768, 12M parameters",
        ),
        GoogleCheckpoint(
            "albert_large_v2",
            _ALBERT + "albert_large_v2.tar.gz",
            "ALBERT",
            False,
            "63 MB",
            "ALBERT-Large v2: 24 shared layers, hidden 1024, 18M parameters",
        ),
        GoogleCheckpoint(
            "albert_xlarge_v2",
            _ALBERT + "albert_xlarge_v2.tar.gz",
            "ALBERT",
            False,
            "208 MB",
            "ALBERT-xLarge v2: 24 shared layers, hidden 2048, 60M parameters",
        ),
        GoogleCheckpoint(
            "albert_xxlarge_v2",
            _ALBERT + "albert_xxlarge_v2.tar.gz",
            "ALBERT",
            False,
            "800 MB",
            "ALBERT-xxLarge v2: 12 shared layers, hidden 4096, 235M parameters",
        ),
    ]
}


def manual_instructions(spec: GoogleCheckpoint, pretrained: Path) -> str:
    """How to place the checkpoint by hand, for the error message of a failed download."""
    files = (
        "bert_config.json, vocab.txt, bert_model.ckpt.index and bert_model.ckpt.data-00000-of-00001"
        if spec.family == "BERT"
        else "albert_config.json, 30k-clean.model, model.ckpt-best.index and model.ckpt-best.data-00000-of-00001"
    )
    return (
        f"To use it without a download, save {spec.url} as {pretrained / spec.archive_name}, "
        f"or unpack it so that {pretrained / spec.name / 'tf1'}/ holds {files}."
    )


def fetch(spec: GoogleCheckpoint, models_dir: str | Path = "models") -> Path:
    """Download (once), verify, unpack and convert a named checkpoint; returns the preset folder.

    Cache: models/pretrained/<archive> (the download), models/pretrained/<name>/tf1/ (its files),
    models/pretrained/<name>/keras/ (the converted preset, reused by every later run).
    """
    from bertclf.pretrained.download import DownloadError, download

    pretrained = Path(models_dir) / "pretrained"
    home = pretrained / spec.name
    preset = home / CONVERTED
    if (preset / "source.json").is_file():
        return preset
    home.mkdir(parents=True, exist_ok=True)
    tf1 = home / "tf1"
    files = find_files(tf1) if tf1.is_dir() else None
    if files is None:
        archive = pretrained / spec.archive_name
        if not archive.is_file():
            log.info("downloading %s (%s) from %s", spec.name, spec.size, spec.url)
            try:
                download(spec.url, archive, manual=manual_instructions(spec, pretrained))
            except DownloadError as err:
                raise GoogleCheckpointError(str(err)) from None
        try:
            archives.check(archive)
        except archives.ArchiveError as err:
            archive.unlink()
            raise GoogleCheckpointError(
                f"{err}; deleted it, run again to download it afresh. {manual_instructions(spec, pretrained)}"
            ) from None
        files = find_files(archives.extract(archive, tf1, lambda name: WANTED.fullmatch(name) is not None))
        if files is None:
            raise GoogleCheckpointError(
                f"{archive.name} holds no {spec.family} checkpoint files. {manual_instructions(spec, pretrained)}"
            )
        archive.unlink()  # unpacked and verified: the archive is only a second copy
    return convert(files, preset, lowercase=not spec.cased)


def convert_folder(folder: Path, files: GoogleFiles, models_dir: str | Path = "models") -> Path:
    """Convert a user's unpacked Google checkpoint once; later runs reuse the cached preset."""
    digest = hashlib.sha256()
    for path in (files.config, files.vocab, Path(files.checkpoint + ".index")):
        digest.update(path.read_bytes())
    preset = Path(models_dir) / "pretrained" / "converted" / f"{Path(folder).resolve().name}-{digest.hexdigest()[:12]}"
    if (preset / "source.json").is_file():
        return preset
    return convert(files, preset, lowercase=casing_from_name(Path(folder).resolve().name))


def catalog(models_dir: str | Path) -> list[CatalogEntry]:
    """Every published name, and whether it is converted and cached under models_dir."""
    pretrained = Path(models_dir) / "pretrained"
    return [
        CatalogEntry(
            spec.name,
            spec.family,
            spec.cased,
            spec.size,
            (pretrained / spec.name / CONVERTED / "source.json").is_file(),
            spec.description,
        )
        for spec in GOOGLE_CHECKPOINTS.values()
    ]
