"""Atomic file writes: a file appears complete under its name, or not at all.

Every writer goes to a hidden temporary file beside the target (``.NAME.*.tmp``) and renames it
into place. The temporary file gets the permissions a plain ``open`` would give (the umask), not
``mkstemp``'s 0600.
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
        os.replace(tmp, target)
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
