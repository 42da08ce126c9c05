"""Read .zip and .tar.gz archives defensively: every member through its checksum, and only the
files we ask for, flat, under their base names (a member's path never chooses where it goes)."""

import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from bertclf.files import staged_folder
from bertclf.pretrained.checkpoint import CheckpointError

# Caps on what an archive may unpack to: the largest checkpoint we fetch (BERT-Large) holds one
# 1.3 GB weights file; anything far beyond is a decompression bomb, not a checkpoint.
MAX_MEMBER_BYTES = 3 << 30
MAX_TOTAL_BYTES = 4 << 30


class ArchiveError(CheckpointError):
    """An archive is truncated, corrupt, too large unpacked, or not an archive at all."""


def members(
    path: Path, max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> Iterator[tuple[str, IO[bytes]]]:
    """(member path, open file) for every regular file of a .zip or .tar.gz, in archive order.
    Reading a member to its end checks its CRC (zip) or the stream's (gzip). Sizes are checked
    against the caps before a member is read: the readers never return more than the size declared.
    """
    total = 0

    def admit(name: str, size: int) -> None:
        nonlocal total
        total += size
        if size > max_member_bytes:
            raise ArchiveError(f"{path.name}: {name} unpacks to {size} bytes, more than the {max_member_bytes} allowed")
        if total > max_total_bytes:
            raise ArchiveError(f"{path.name} unpacks to more than {max_total_bytes} bytes; refusing it")

    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zipped:
            for info in zipped.infolist():
                if not info.is_dir():
                    admit(info.filename, info.file_size)
                    with zipped.open(info) as f:
                        yield info.filename, f
    else:
        with tarfile.open(path, "r:gz") as tarred:
            for member in tarred:
                if member.isfile():  # links, devices and folders are never read
                    admit(member.name, member.size)
                    extracted = tarred.extractfile(member)
                    if extracted is not None:
                        with extracted as f:
                            yield member.name, f


def base_name(member: str) -> str:
    """A member's file name without any folder: where it goes never depends on its path."""
    return member.replace("\\", "/").rsplit("/", 1)[-1]


def check(path: Path) -> None:
    """Read every member through its checksum; raise ArchiveError on a truncated, corrupt or
    oversized archive."""
    try:
        for _, f in members(path):
            while f.read(1 << 20):
                pass
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise ArchiveError(f"{path.name} is truncated or corrupt ({err})") from None


def extract(path: Path, dest: Path, wanted: Callable[[str], bool], **caps: int) -> Path:
    """Unpack the members whose base name `wanted` accepts into `dest`, flat; `dest` appears whole
    or not at all. Two wanted members with the same base name are refused, never overwritten."""
    seen: dict[str, str] = {}
    with staged_folder(dest) as staging:
        for name, src in members(path, **caps):
            base = base_name(name)
            if not wanted(base):
                continue
            if base in seen:
                raise ArchiveError(f"{path.name} holds {base} twice ({seen[base]} and {name}); refusing to pick one")
            seen[base] = name
            with open(staging / base, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest
