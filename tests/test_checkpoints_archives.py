"""Archives are read defensively: member paths never choose where a file goes, links and devices
are never read, and a truncated archive is refused."""

import io
import tarfile
import zipfile

import pytest

from bertclf.pretrained import archives

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
    assert sorted(archives.base_name(name) for name, _ in archives.members(archive)) == [
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


def test_a_decompression_bomb_is_refused_before_it_is_unpacked(tmp_path):
    archive = tar_with(tmp_path / "bomb.tar.gz", [("top/bert_model.ckpt.index", b"\0" * (1 << 20))])
    assert archive.stat().st_size < 2000, "a tiny file that unpacks to 1 MiB"
    with pytest.raises(archives.ArchiveError, match=r"bert_model.ckpt.index unpacks to 1048576 bytes, more than"):
        archives.extract(archive, tmp_path / "out", lambda name: True, max_member_bytes=1 << 16)
    many = tar_with(tmp_path / "many.tar.gz", [(f"top/part{i}.index", b"\0" * 1000) for i in range(10)])
    with pytest.raises(archives.ArchiveError, match=r"many.tar.gz unpacks to more than 5000 bytes"):
        archives.extract(many, tmp_path / "out", lambda name: True, max_total_bytes=5000)
    assert not (tmp_path / "out").exists(), "nothing is left half unpacked"


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_two_members_with_one_base_name_are_refused(tmp_path, kind):
    members = [("a/vocab.txt", b"first"), ("b/vocab.txt", b"second")]
    if kind == "tar":
        archive = tar_with(tmp_path / "dup.tar.gz", members)
    else:
        archive = tmp_path / "dup.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for name, body in members:
                z.writestr(name, body)
    with pytest.raises(archives.ArchiveError, match=r"holds vocab.txt twice \(a/vocab.txt and b/vocab.txt\)"):
        archives.extract(archive, tmp_path / "out", lambda name: True)
    assert not (tmp_path / "out").exists()
