"""Downloading the official data set files: mirrors, SHA-256 checks, safe extraction.

:func:`download` (``pertlearn data download NAME``) fetches each file of a data set from its
mirrors in order, streaming it to a temporary file beside the target while hashing it; a file
whose SHA-256 matches the catalogue is moved into place atomically. A mirror that fails in any
way (refused or dropped connection, HTTP error, more bytes than the official file has, wrong
checksum) is reported in one line and the next mirror is tried; when all fail, one
:class:`~pertlearn.data.errors.DataError` lists every mirror tried and why. The CIFAR-10 archive
is extracted refusing absolute paths, ``..``, links, devices and other special entries, into a
temporary folder whose entries are renamed into place once all are written.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pertlearn.atomic import atomic_path, sync_dir, sync_file, sync_tree, temporary_dir
from pertlearn.data.catalogue import RemoteFile, dataset_info, resolve_data_dir
from pertlearn.data.errors import DataError

Opener = Callable[[str], IO[bytes]]
"""Opens a URL for reading (a test passes a fake; the default uses :mod:`urllib`)."""
Echo = Callable[[str], None]
"""Receives one line per failed mirror (the CLI prints it on stderr)."""

MAX_EXTRACT_BYTES = 1 << 30
"""Largest total size of the files an archive may extract to (CIFAR-10: 178 MB)."""

_CHUNK = 1 << 20
FETCH_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, http.client.HTTPException)
"""What one mirror's failure may raise: connection and HTTP errors (``URLError`` and timeouts
are ``OSError``; a dropped connection mid-body is ``http.client.IncompleteRead``), a URL
``urllib`` cannot open (``ValueError``), and :class:`DataError` for a wrong size or checksum."""


def sha256_file(path: str | Path, chunk: int = _CHUNK) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _default_opener(url: str) -> IO[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": "pertlearn"})
    response: IO[bytes] = urllib.request.urlopen(request, timeout=60)
    return response


def _one_line(err: BaseException) -> str:
    """An exception as one line (its type when it has no message)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _WriteError(Exception):
    """Writing the downloaded bytes here failed (a full disk): no other mirror can help. Not an
    ``OSError``, so that the mirror loop does not take it for the mirror's failure."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or _one_line(err))


def _copy_verified(response: IO[bytes], out: IO[bytes], remote: RemoteFile, progress: bool) -> None:
    """Stream ``response`` into ``out``, refusing more than ``remote.size`` bytes, and check
    the SHA-256 of what arrived. A failure to write ``out`` raises :class:`_WriteError`."""
    digest = hashlib.sha256()
    received = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm  # lazy: only progress bars need tqdm

        bar = tqdm(total=remote.size, unit="B", unit_scale=True, desc=remote.name)
    try:
        while block := response.read(_CHUNK):
            received += len(block)
            if received > remote.size:
                raise DataError(f"sent more than the {remote.size} bytes of the official file")
            digest.update(block)
            try:
                out.write(block)
            except OSError as err:
                raise _WriteError(err) from None
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    found = digest.hexdigest()
    if found != remote.sha256.lower():
        raise DataError(
            f"received {received} bytes with SHA-256 {found}, expected {remote.sha256}; "
            "corrupt or not the official file"
        )


def _write_error(path: Path, reason: object) -> DataError:
    """The one-line error for a downloaded file that cannot be written here (``reason``: why)."""
    return DataError(
        f"cannot write {str(path)!r}: {reason}; free disk space, fix the permissions or choose "
        "another data directory (--data-dir, PERTLEARN_DATA)"
    )


def _fetch_into(
    remote: RemoteFile, out: IO[bytes], opener: Opener, progress: bool, echo: Echo | None
) -> None:
    """Write ``remote`` into ``out`` from the first of its mirrors that delivers it whole and
    verified (``out`` is emptied before each try); every failed mirror is passed to ``echo``,
    and all failing raises :class:`DataError` listing them."""
    errors = []
    for number, url in enumerate(remote.urls, start=1):
        if out.tell():  # what a failed mirror left
            out.seek(0)
            out.truncate()
        try:
            with opener(url) as response:
                _copy_verified(response, out, remote, progress)
            return
        except FETCH_ERRORS as err:
            errors.append(f"{url}: {_one_line(err)}")
            if echo is not None:
                then = "no mirror left" if number == len(remote.urls) else "trying the next mirror"
                echo(f"warning: {remote.name} from {url} failed ({_one_line(err)}); {then}")
    raise DataError(
        f"could not download {remote.name} from any of its {len(remote.urls)} mirrors: "
        + " | ".join(errors)
    )


def fetch(
    remote: RemoteFile,
    folder: Path,
    *,
    opener: Opener = _default_opener,
    progress: bool = False,
    echo: Echo | None = None,
) -> Path:
    """Download ``remote`` into ``folder`` (trying its URLs in order), verify its SHA-256 and
    move it into place atomically. A file already there with the right checksum is kept. Each
    failed mirror is passed to ``echo`` as one line; all failing raises :class:`DataError`.
    A local problem (``folder`` cannot be created or written, a folder in the way of the file)
    raises :class:`DataError` at once, without trying the other mirrors."""
    target = folder / remote.name
    if target.exists() and not target.is_file():
        raise DataError(
            f"{str(target)!r} is in the way of the downloaded file (it is not a file); "
            "move it away and download again"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if target.is_file() and sha256_file(target) == remote.sha256:
            return target
        with atomic_path(target) as tmp, tmp.open("wb") as out:
            _fetch_into(remote, out, opener, progress, echo)
    except _WriteError as err:
        raise _write_error(target, err) from None
    except OSError as err:
        raise _write_error(target, err.strerror or _one_line(err)) from None
    return target


def _move_into_place(entry: Path, target: Path) -> None:
    """Rename ``entry`` to ``target``, replacing what is there (a symlink itself, not what it
    points to; a folder with its content: the archive's version replaces an older one)."""
    if entry.is_dir():
        sync_tree(entry)
    else:
        sync_file(entry)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.is_symlink() or target.exists():
        target.unlink()
    os.replace(entry, target)
    sync_dir(target.parent)


def _check_nothing_unread(tar: tarfile.TarFile, archive: Path) -> None:
    """Raise :class:`DataError` unless all that follows the last entry ``tar`` read is zero
    padding. :mod:`tarfile` takes a damaged entry header for the end of the archive (the
    entries after it vanish without a word), as it does for an archive cut off between two
    entries, and checks a gzip archive's CRC only when it reads to the end of the stream, which
    extracting never does; reading the rest checks all three."""
    stream = tar.fileobj
    assert stream is not None
    stream.seek(tar.offset)
    padding = 0
    while block := stream.read(_CHUNK):
        if block.count(0) != len(block):
            raise DataError(
                f"{str(archive)!r} is damaged: an entry after the first {len(tar.getmembers())} "
                "cannot be read; delete it and download it again"
            )
        padding += len(block)
    if padding < tarfile.BLOCKSIZE:  # cut off between two entries: no end-of-archive block
        raise DataError(
            f"{str(archive)!r} is truncated (it ends without the end-of-archive block); "
            "delete it and download it again"
        )


def safe_extract(archive: Path, folder: Path, *, max_bytes: int = MAX_EXTRACT_BYTES) -> None:
    """Extract a tar archive into ``folder``, refusing (before extracting anything) absolute
    paths, ``..``, links, devices, FIFOs and archives whose files exceed ``max_bytes``.

    The archive is extracted into a hidden temporary folder inside ``folder`` (``.NAME.*.tmp``,
    which no reader looks at) and each top-level entry is then renamed into place, so an
    extraction that fails or is interrupted leaves no partial files behind. An archive with an
    unreadable entry (a damaged header) or a wrong gzip CRC is refused, not cut short."""
    root = folder.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                target = (folder / member.name).resolve()
                if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
                    raise DataError(
                        f"{str(archive)!r} holds an unsafe entry {member.name!r}; refused"
                    )
                total += member.size
                if total > max_bytes:
                    raise DataError(
                        f"{str(archive)!r} would extract to more than {max_bytes} bytes; refused"
                    )
            folder.mkdir(parents=True, exist_ok=True)
            staging = temporary_dir(folder, archive.name)
            try:
                tar.extractall(staging, members=members, filter="data")
                _check_nothing_unread(tar, archive)
                for entry in sorted(staging.iterdir()):
                    _move_into_place(entry, folder / entry.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(
            f"{str(archive)!r} is not a readable tar archive ({_one_line(err)}); "
            "delete it and download it again"
        ) from None
    except OSError as err:
        reason = err.strerror or _one_line(err)
        raise DataError(
            f"cannot extract {str(archive)!r} into {str(folder)!r}: {reason}; nothing was kept "
            "(free disk space or fix the folder's permissions, then download again)"
        ) from None


def download(
    name: str,
    data_dir: str | Path | None = None,
    *,
    opener: Opener = _default_opener,
    progress: bool = False,
    echo: Echo | None = None,
) -> Path:
    """Fetch the official files of data set ``name`` into ``<data dir>/<name>/``, verify their
    SHA-256 and (CIFAR-10) extract the archive safely. Returns the data set's folder. Failed
    mirrors are reported to ``echo`` (see :func:`fetch`)."""
    info = dataset_info(name)
    folder = resolve_data_dir(data_dir) / info.name
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        for remote in info.files:
            path = fetch(remote, folder, opener=opener, progress=progress, echo=echo)
            if path.name.endswith(".tar.gz"):
                safe_extract(path, folder)
    except DataError:
        for made in created:  # deepest first: a failed download leaves no empty folders
            if made.is_dir() and not any(made.iterdir()):
                made.rmdir()
        raise
    return folder / "cifar-10-batches-py" if name == "cifar10" else folder
