"""Read .zip and .tar.gz archives defensively: every member through its checksum, and only the
files we ask for, flat, under their base names (a member's path never chooses where it goes)."""

import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from bertclf.checkpoints.checkpoint import CheckpointError
from bertclf.files import staged_folder


class ArchiveError(CheckpointError):
    """An archive is truncated, corrupt or not an archive at all."""


def members(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(base name, open file) for every regular file of a .zip or .tar.gz, in archive order.
    Reading a member to its end checks its CRC (zip) or the stream's (gzip)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as f:
                        yield info.filename.rsplit("/", 1)[-1], f
    else:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile():  # links, devices and folders are never read
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        with extracted as f:
                            yield member.name.rsplit("/", 1)[-1], f


def check(path: Path) -> None:
    """Read every member through its checksum; raise ArchiveError on a truncated or corrupt file."""
    try:
        for _, f in members(path):
            while f.read(1 << 20):
                pass
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise ArchiveError(f"{path.name} is truncated or corrupt ({err})") from None


def extract(path: Path, dest: Path, wanted: Callable[[str], bool]) -> Path:
    """Unpack the members whose base name `wanted` accepts into `dest`, flat; `dest` appears whole
    or not at all."""
    with staged_folder(dest) as staging:
        for base, src in members(path):
            if wanted(base):
                with open(staging / base, "wb") as out:
                    shutil.copyfileobj(src, out)
    return dest
