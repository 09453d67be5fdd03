"""Atomic file writes: a file appears complete under its name, or not at all.

Every writer goes to a hidden temporary file beside the target (``.NAME.*.tmp``) and renames it
into place. The temporary file gets the permissions a plain ``open`` would give (the umask), not
``mkstemp``'s 0600.

Written data is flushed to the disk (``fsync``) before the rename, and the folder after it, so
that a power cut or a crash of the operating system (not only of the process) leaves the old
file or the complete new one, never an empty or partial file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's file-mode creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


TEMPORARY_SUFFIX = ".tmp"


def temporary_prefix(name: str) -> str:
    """The prefix of the hidden temporaries written beside a target named ``name``."""
    return f".{name}."


def temporary_dir(folder: Path, name: str) -> Path:
    """A fresh hidden directory ``.NAME.*.tmp`` in ``folder`` to write a directory named
    ``name`` into before it is renamed into place (mode 0700, like ``mkdtemp``)."""
    return Path(
        tempfile.mkdtemp(dir=folder, prefix=temporary_prefix(name), suffix=TEMPORARY_SUFFIX)
    )


def left_temporaries(folder: Path, name: str) -> list[Path]:
    """The hidden temporaries (``.NAME.*.tmp``) that interrupted writes of targets named
    ``name`` (a glob pattern, e.g. ``"*.json"``) left in ``folder``."""
    return sorted(folder.glob(f"{temporary_prefix(name)}*{TEMPORARY_SUFFIX}"))


def sync_file(path: Path) -> None:
    """Flush the content of the file ``path`` to the disk."""
    try:
        fd = os.open(path, os.O_RDWR)  # Windows flushes only handles open for writing
    except PermissionError:  # a read-only file (an extracted archive's): POSIX flushes it too
        fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(folder: Path) -> None:
    """Flush the entries of ``folder`` (names created, renamed or removed in it) to the disk.
    A no-op where folders cannot be opened (Windows, whose renames need no such flush)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; nothing more can be done
        pass
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then every folder, the deepest first: call it before
    renaming a directory written in place (a run directory) to its final name."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            sync_file(Path(root, name))
        sync_dir(Path(root))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block exits normally it is renamed to
    ``path`` (for writers that take a file name: safetensors, matplotlib, pyarrow). On error the
    temporary file is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=target.parent, prefix=temporary_prefix(target.name), suffix=TEMPORARY_SUFFIX
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        sync_file(tmp)
        os.replace(tmp, target)
        sync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON (and a final newline) to ``path`` atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
