"""The CIFAR-10 archive is extracted refusing, before anything is written, every entry kind
that could land outside the data folder or create something other than files and folders."""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from pertlearn.data import download
from pertlearn.data.download import safe_extract
from pertlearn.data.errors import DataError


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def write_archive(path: Path, *entries: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member("cifar-10-batches-py", tarfile.DIRTYPE))
        ok = member("cifar-10-batches-py/readme.html")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        for entry in entries:
            data = io.BytesIO(b"x" * entry.size) if entry.isfile() else None
            tar.addfile(entry, data)
    return path


UNSAFE = {
    "absolute path": member("/tmp/pertlearn-evil"),
    "dot-dot": member("../evil"),
    "dot-dot inside": member("cifar-10-batches-py/../../evil"),
    "symlink": member("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd"),
    "relative symlink": member("cifar-10-batches-py/up", tarfile.SYMTYPE, "../.."),
    "hard link": member("cifar-10-batches-py/hard", tarfile.LNKTYPE, "/etc/passwd"),
    "character device": member("cifar-10-batches-py/null", tarfile.CHRTYPE),
    "block device": member("cifar-10-batches-py/disk", tarfile.BLKTYPE),
    "fifo": member("cifar-10-batches-py/pipe", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("kind", list(UNSAFE))
def test_unsafe_entry_is_refused_and_nothing_is_extracted(tmp_path: Path, kind: str) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", UNSAFE[kind])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"a\.tar\.gz' holds an unsafe entry .*; refused") as err:
        safe_extract(archive, out)
    assert "\n" not in str(err.value)
    assert list(out.iterdir()) == []  # refused before extracting the safe entries either
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/pertlearn-evil").exists()


def test_safe_archive_extracts(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz")
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "cifar-10-batches-py" / "readme.html").read_bytes() == b"ok"


def test_archive_too_large_when_extracted(tmp_path: Path) -> None:
    big = member("cifar-10-batches-py/big")
    big.size = 5000
    archive = write_archive(tmp_path / "a.tar.gz", big)
    with pytest.raises(DataError, match=r"more than 4096 bytes; refused"):
        safe_extract(archive, tmp_path / "out", max_bytes=4096)
    assert download.MAX_EXTRACT_BYTES >= 200_000_000  # CIFAR-10 extracts to 178 MB


def test_corrupt_archive_is_one_line(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz")
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DataError, match=r"a\.tar\.gz' is not a readable tar archive"):
        safe_extract(archive, tmp_path / "out")


def test_failed_extraction_leaves_no_partial_files(tmp_path: Path) -> None:
    """The second file cannot be written (its parent is the first file): nothing extracted is
    kept, where the first file used to stay behind."""
    blocked = member("cifar-10-batches-py/readme.html/inside")
    archive = write_archive(tmp_path / "a.tar.gz", blocked)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"cannot extract .*a\.tar\.gz' into .*out'") as err:
        safe_extract(archive, out)
    assert "\n" not in str(err.value)
    assert list(out.iterdir()) == []


def test_interrupted_extraction_leaves_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a file is being written: neither it nor the files before it are kept."""
    copy = tarfile.copyfileobj
    calls: list[int] = []

    def interrupted_copy(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        copy(*args, **kwargs)  # type: ignore[arg-type]

    second = member("cifar-10-batches-py/data_batch_1")
    second.size = 3
    archive = write_archive(tmp_path / "a.tar.gz", second)
    monkeypatch.setattr(tarfile, "copyfileobj", interrupted_copy)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, out)
    assert list(out.iterdir()) == []


def test_extraction_replaces_an_earlier_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "cifar-10-batches-py").mkdir(parents=True)
    (out / "cifar-10-batches-py" / "readme.html").write_bytes(b"old, maybe truncated")
    safe_extract(write_archive(tmp_path / "a.tar.gz"), out)
    assert (out / "cifar-10-batches-py" / "readme.html").read_bytes() == b"ok"
    assert [p.name for p in out.iterdir()] == ["cifar-10-batches-py"]


def test_an_entry_with_a_damaged_header_is_not_dropped_silently(tmp_path: Path) -> None:
    """tarfile takes a damaged header for the end of the archive: the test batch behind it
    vanished and a train-only data set loaded without a word."""
    second = member("cifar-10-batches-py/test_batch")
    second.size = 3
    archive = write_archive(tmp_path / "a.tar.gz", second)
    raw = bytearray(gzip.decompress(archive.read_bytes()))
    header = raw.index(b"cifar-10-batches-py/test_batch")
    raw[header + 148 : header + 156] = b"0000000\x00"  # a wrong header checksum
    archive.write_bytes(gzip.compress(bytes(raw)))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"a\.tar\.gz' is damaged: an entry after the first 2 "):
        safe_extract(archive, out)
    assert list(out.iterdir()) == []


def test_a_wrong_gzip_crc_is_refused(tmp_path: Path) -> None:
    """Extracting never reads to the end of the gzip stream, where its CRC is checked."""
    archive = write_archive(tmp_path / "a.tar.gz")
    blob = bytearray(archive.read_bytes())
    blob[-8] ^= 0xFF  # the CRC-32 of the content
    archive.write_bytes(bytes(blob))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"a\.tar\.gz' is not a readable tar archive .*CRC"):
        safe_extract(archive, out)
    assert list(out.iterdir()) == []


def test_an_archive_cut_off_between_entries_is_refused(tmp_path: Path) -> None:
    second = member("cifar-10-batches-py/test_batch")
    second.size = 3
    archive = write_archive(tmp_path / "a.tar.gz", second)
    raw = gzip.decompress(archive.read_bytes())
    header = raw.index(b"cifar-10-batches-py/test_batch")
    archive.write_bytes(gzip.compress(raw[:header]))  # ends where the test batch's entry starts
    with pytest.raises(DataError, match=r"a\.tar\.gz' is truncated \(it ends without the end-of"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads paths from /proc/self/fd")
def test_extracted_files_are_flushed_before_they_move_into_place_read_only_ones_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = member("cifar-10-batches-py/data_batch_1")
    locked.size, locked.mode = 3, 0o444
    archive = write_archive(tmp_path / "a.tar.gz", locked)
    flushed: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    safe_extract(archive, tmp_path / "out")
    names = {Path(path).name for path in flushed}
    assert {"readme.html", "data_batch_1", "cifar-10-batches-py"} <= names
    assert str((tmp_path / "out").resolve()) in flushed  # the folder after the move
    assert (tmp_path / "out" / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"xxx"
