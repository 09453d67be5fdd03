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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block exits normally it is renamed to
    ``path`` (for writers that take a file name: safetensors, matplotlib, pyarrow). On error the
    temporary file is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
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
