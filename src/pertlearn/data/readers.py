"""Reading data files safely: raw or gzip streams, bounded reads, one-line errors.

Every image data file may be gzip-compressed (detected by its magic bytes, not its name; a file
compressed twice is refused with a message saying so). A
:class:`DataReader` decompresses as it reads, so a caller reads only the bytes it needs (a file
header first, then exactly the data the header declares) and never inflates a whole file it has
not checked. Every read failure becomes a :class:`~pertlearn.data.errors.DataError` whose one
line names the file.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from types import TracebackType

import numpy as np

from pertlearn.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class DataReader:
    """A data file opened for reading, decompressed on the fly when it is gzip.

    Use as a context manager; :meth:`read` and :meth:`at_end` raise :class:`DataError`
    (naming the file) for an unreadable file or a corrupt / truncated gzip stream.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.gzip = False
        self._raw: io.BufferedReader | None = None
        self._stream: io.BufferedIOBase | None = None

    def __enter__(self) -> DataReader:
        try:
            raw = self.path.open("rb")
        except OSError as err:
            raise self._read_error(err) from None
        self._raw = raw
        try:
            self.gzip = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
        except OSError as err:
            raw.close()
            raise self._read_error(err) from None
        self._stream = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzip else raw
        if self.gzip and self._nested_gzip():
            self.__exit__(None, None, None)
            raise DataError(
                f"{str(self.path)!r} is gzip-compressed twice; decompress it once (gunzip) "
                "and try again"
            )
        return self

    def _nested_gzip(self) -> bool:
        """Whether the decompressed data starts with the gzip magic bytes again."""
        assert isinstance(self._stream, gzip.GzipFile)
        try:
            return self._stream.peek(2)[:2] == GZIP_MAGIC
        except (OSError, EOFError, zlib.error) as err:
            self.__exit__(None, None, None)
            raise self._read_error(err) from None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None and self._stream is not self._raw:
            self._stream.close()
        if self._raw is not None:
            self._raw.close()
        self._stream = self._raw = None

    def _read_error(self, err: Exception) -> DataError:
        if isinstance(err, EOFError | zlib.error | gzip.BadGzipFile):
            return DataError(
                f"{str(self.path)!r} is a corrupt or truncated gzip file ({err}); "
                "delete it and download it again"
            )
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        return DataError(f"cannot read {str(self.path)!r}: {reason}")

    def read(self, size: int) -> bytearray:
        """Up to ``size`` bytes (fewer only at the end of the data), read in chunks so that
        memory follows the data actually present, not the size asked for."""
        if self._stream is None:
            raise RuntimeError("DataReader used outside its with-block")
        data = bytearray()
        try:
            while len(data) < size:
                block = self._stream.read(min(_CHUNK, size - len(data)))
                if not block:
                    break
                data += block
        except (OSError, EOFError, zlib.error) as err:
            raise self._read_error(err) from None
        return data

    def at_end(self) -> bool:
        """Whether all the data has been read (reads one byte to find out)."""
        return not self.read(1)


def read_capped(path: str | Path, limit: int, what: str) -> bytes:
    """The whole (decompressed) content of ``path``, refused with :class:`DataError` when it
    exceeds ``limit`` bytes (``what`` names the kind of file in the message)."""
    with DataReader(path) as reader:
        data = bytes(reader.read(limit))
        if len(data) == limit and not reader.at_end():
            raise DataError(
                f"{str(path)!r} holds more than {limit} bytes, more than {what} can; "
                "it is not one (or is corrupt)"
            )
    return data


def check_labels(labels: np.ndarray, num_classes: int, path: str | Path) -> None:
    """Raise :class:`DataError` naming ``path`` unless every label lies in
    ``0..num_classes-1``. ``labels``: ``(N,)`` integers."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError(
            f"{str(path)!r} holds label {int(bad)} outside 0..{num_classes - 1}; "
            "the file is corrupt"
        )
