"""Every way a mirror can fail is one line, and the next mirror is tried; all failing is one
error listing each mirror tried. No network: openers and ``urlopen`` are local fakes."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from click.testing import CliRunner

from pertlearn.cli.main import cli
from pertlearn.data.catalogue import RemoteFile
from pertlearn.data.download import fetch
from pertlearn.data.errors import DataError

CONTENT = b"the official file" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


class DroppedResponse(io.BytesIO):
    """A response whose connection drops after ``keep`` bytes of the body."""

    def __init__(self, data: bytes, keep: int) -> None:
        super().__init__(data[:keep])
        self.total = len(data)

    def read(self, size: int | None = -1) -> bytes:
        block = super().read(size)
        if not block:
            raise http.client.IncompleteRead(b"", self.total - self.tell())
        return block


def opener_for(answers: dict[str, object]) -> object:
    """An opener serving ``answers[url]``: bytes (the body), or an exception to raise, or a
    ``DroppedResponse``."""

    def opener(url: str) -> IO[bytes]:
        answer = answers[url]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, io.BytesIO):
            return answer
        assert isinstance(answer, bytes)
        return io.BytesIO(answer)

    return opener


def test_each_failing_mirror_is_one_line_and_the_next_is_tried(tmp_path: Path) -> None:
    answers: dict[str, object] = {
        "https://refused.example/f": urllib.error.URLError(ConnectionRefusedError(111, "refused")),
        "https://dropped.example/f": DroppedResponse(CONTENT, 700),
        "https://reset.example/f": ConnectionResetError(104, "Connection reset by peer"),
        "https://tampered.example/f": CONTENT[:-1] + b"!",
        "https://endless.example/f": CONTENT + b"more",
        "https://bad-url/f": ValueError("unknown url type: 'bad-url'"),
        "https://good.example/f": CONTENT,
    }
    remote = RemoteFile("f.bin", tuple(answers), SHA, len(CONTENT))
    lines: list[str] = []
    out = fetch(remote, tmp_path, opener=opener_for(answers), echo=lines.append)  # type: ignore[arg-type]
    assert out.read_bytes() == CONTENT
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary files left
    assert len(lines) == 6 and all("\n" not in line for line in lines)
    for line, url in zip(lines, answers, strict=False):
        assert url in line and "trying the next mirror" in line
    assert "IncompleteRead" in lines[1]
    assert "SHA-256" in lines[3] and "more than the 1700 bytes" in lines[4]


def test_all_mirrors_failing_is_one_error_listing_them(tmp_path: Path) -> None:
    answers: dict[str, object] = {
        "https://a.example/f": DroppedResponse(CONTENT, 10),
        "https://b.example/f": CONTENT[:5],
        "https://c.example/f": TimeoutError("timed out"),
    }
    remote = RemoteFile("f.bin", tuple(answers), SHA, len(CONTENT))
    lines: list[str] = []
    with pytest.raises(DataError) as err:
        fetch(remote, tmp_path, opener=opener_for(answers), echo=lines.append)  # type: ignore[arg-type]
    message = str(err.value)
    assert message.startswith("could not download f.bin from any of its 3 mirrors: ")
    assert "\n" not in message and all(url in message for url in answers)
    assert lines[-1].endswith("no mirror left")
    assert list(tmp_path.iterdir()) == []


def test_cli_download_with_every_connection_dropping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pertlearn data download mnist` through the real default opener, with ``urlopen``
    replaced by a fake whose connections all drop mid-body: a warning line per mirror, then
    one error line and exit status 2 (previously a traceback after the first mirror)."""
    tried: list[str] = []

    def fake_urlopen(request: urllib.request.Request, timeout: float) -> IO[bytes]:
        tried.append(request.full_url)
        return DroppedResponse(b"\x1f\x8b partial", 5)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    result = CliRunner().invoke(
        cli, ["data", "download", "mnist", "-q", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert len(tried) == 3  # every mirror of the first file
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(errors) == 1 and "any of its 3 mirrors" in errors[0]
    assert len(warnings) == 3 and all("IncompleteRead" in line for line in warnings)
    assert "Traceback" not in result.output
    assert not (tmp_path / "mnist").exists()  # no partial files, no empty folder


def test_a_failed_download_leaves_no_empty_folders(tmp_path: Path) -> None:
    from pertlearn.data.download import download

    def refused(url: str) -> IO[bytes]:
        raise urllib.error.URLError(ConnectionRefusedError(111, "refused"))

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for data_dir in (tmp_path / "new" / "data", kept):
        with pytest.raises(DataError, match="could not download"):
            download("mnist", data_dir, opener=refused)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def counting_opener(tried: list[str]) -> object:
    def opener(url: str) -> IO[bytes]:
        tried.append(url)
        return io.BytesIO(CONTENT)

    return opener


REMOTE = RemoteFile("f.bin", ("https://a.example/f", "https://b.example/f"), SHA, len(CONTENT))


def test_a_folder_in_the_way_is_one_line_and_no_mirror_is_tried(tmp_path: Path) -> None:
    """It was blamed on every mirror in turn, each downloaded whole before the rename failed."""
    (tmp_path / "f.bin").mkdir()
    tried: list[str] = []
    with pytest.raises(DataError, match=r"f\.bin' is in the way .*; move it away") as err:
        fetch(REMOTE, tmp_path, opener=counting_opener(tried))  # type: ignore[arg-type]
    assert "\n" not in str(err.value) and tried == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_no_other_mirror_is_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes to /dev/full fail with ENOSPC, as on a full disk: a local error, not the
    mirror's."""
    from pertlearn.data import download

    @contextlib.contextmanager
    def full_disk(path: Path) -> Iterator[Path]:
        yield Path("/dev/full")

    monkeypatch.setattr(download, "atomic_path", full_disk)
    for content in (CONTENT, CONTENT * 100):  # fails on closing the file / on a write
        remote = RemoteFile("f.bin", REMOTE.urls, hashlib.sha256(content).hexdigest(), 10**6)
        tried: list[str] = []

        def opener(url: str, content: bytes = content, tried: list[str] = tried) -> IO[bytes]:
            tried.append(url)
            return io.BytesIO(content)

        lines: list[str] = []
        with pytest.raises(DataError, match=r"cannot write .*f\.bin': No space left on device"):
            fetch(remote, tmp_path, opener=opener, echo=lines.append)
        assert tried == ["https://a.example/f"] and lines == []


def test_a_data_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    from pertlearn.data.download import download

    data_dir = tmp_path / "data"
    data_dir.write_text("not a folder")
    tried: list[str] = []
    with pytest.raises(DataError, match=r"cannot write .*: Not a directory; .*--data-dir"):
        download("mnist", data_dir, opener=counting_opener(tried))  # type: ignore[arg-type]
    assert tried == []
