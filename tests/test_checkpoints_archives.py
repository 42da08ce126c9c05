"""Archives are read defensively: member paths never choose where a file goes, links and devices
are never read, and a truncated archive is refused."""

import io
import tarfile
import zipfile

import pytest

from bertclf.checkpoints import archives

LINKS = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}


def tar_with(path, members):
    """A .tar.gz of (name, file content, or "symlink" / "hardlink" to /etc/passwd) members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            if isinstance(body, str):
                info.type, info.linkname = LINKS[body], "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return path


def test_members_land_flat_under_their_base_names_and_only_wanted_ones(tmp_path):
    archive = tar_with(
        tmp_path / "a.tar.gz",
        [
            ("top/vocab.txt", b"[PAD]\n"),
            ("../../escape/bert_config.json", b"{}"),
            ("/abs/model.ckpt.index", b"index"),
            ("top/link.txt", "symlink"),
            ("top/hard.txt", "hardlink"),
            ("top/notes.md", b"not wanted"),
        ],
    )
    dest = archives.extract(archive, tmp_path / "out", lambda name: not name.endswith(".md"))
    assert sorted(p.name for p in dest.iterdir()) == ["bert_config.json", "model.ckpt.index", "vocab.txt"]
    assert (dest / "bert_config.json").read_bytes() == b"{}"
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert sorted(name for name, _ in archives.members(archive)) == [
        "bert_config.json",
        "model.ckpt.index",
        "notes.md",
        "vocab.txt",
    ]


def test_zip_members_are_read_through_their_checksums(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("top/vocab.txt", bytes(range(256)) * 400)
    archives.check(path)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(archives.ArchiveError, match=r"^cut.zip is truncated or corrupt"):
        archives.check(cut)
    corrupt = bytearray(path.read_bytes())
    corrupt[5000] ^= 0xFF  # one byte of the stored data: the CRC no longer matches
    (tmp_path / "bad.zip").write_bytes(bytes(corrupt))
    with pytest.raises(archives.ArchiveError, match=r"^bad.zip is truncated or corrupt"):
        archives.check(tmp_path / "bad.zip")
    assert not (tmp_path / "out").exists()
