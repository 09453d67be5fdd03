"""CIFAR-10 python batches, read by a restricted unpickler that never imports or calls anything.

A CIFAR-10 batch is a pickle of a dict holding ``data`` (a uint8 NumPy array ``(N, 3072)``, also
accepted as ``(N, 3, 32, 32)``, or raw bytes; any other shape is refused), ``labels`` (a list of
``N`` ints) and two descriptive entries. It is read by :class:`RestrictedUnpickler`, which
builds only dicts, lists, tuples, sets, strings, bytes and numbers, plus an inert description of
a NumPy array (shape, dtype, raw bytes) that is then checked and turned into an array here. No
class or function named by the file is ever imported or called.

A pickle is a program, so its size is bounded before it runs: the file (decompressed) may hold
at most :data:`MAX_BATCH_BYTES`; a first pass over its opcodes (:func:`pickletools.genops`, which
builds nothing) refuses more than :data:`MAX_OPCODES` opcodes, memo indices beyond them and
tuples nested more than :data:`MAX_DEPTH` deep (the unpickler hashes dict keys and set items,
and hashing a tuple recurses in C without a limit); and turning the result into arrays walks
every shared object once (memoized, never copied again per reference) while bounding the
elements visited (:data:`MAX_ELEMENTS`) and the nesting depth (:data:`MAX_DEPTH`). The bytes the
stand-ins copy (strings turned into bytes, at every reference to a shared one) count against
:data:`MAX_BATCH_BYTES` in all. A small file therefore cannot expand into a huge object graph,
nor into gigabytes of copies.
"""

from __future__ import annotations

import functools
import io
import math
import pickle
import pickletools
from pathlib import Path
from typing import IO, Any

import numpy as np

from pertlearn.data.errors import DataError
from pertlearn.data.readers import check_labels, read_capped

MAX_BATCH_BYTES = 1 << 26
"""Largest (decompressed) CIFAR-10 batch accepted: 64 MiB (an official batch holds 31 MB)."""
MAX_OPCODES = 1 << 20
"""Most pickle opcodes a batch may hold (an official batch has about 31,000)."""
MAX_ELEMENTS = 1 << 20
"""Most container elements (list and tuple items, dict entries) a batch may hold in all."""
MAX_DEPTH = 20
"""Deepest nesting of containers accepted (a batch nests two deep)."""

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
_TUPLES = {"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"}


class _CopyBudget:
    """The bytes the stand-ins below may copy while one pickle loads: a string the pickle
    shares (memo) is converted again at every reference, so without a bound a 16 MB string
    referenced a thousand times would become 16 GB of bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def spend(self, size: int) -> None:
        self.spent += size
        if self.spent > self.limit:
            raise ValueError(f"more than {self.limit} bytes of strings converted to bytes")


class _ArrayStub:
    """Inert stand-in for a pickled NumPy array: records shape, dtype and raw bytes only.
    ``budget``: what converting its data to bytes may copy (given by :func:`_reconstruct_stub`;
    an array made otherwise must hold bytes already)."""

    def __init__(self, *args: Any, budget: _CopyBudget | None = None) -> None:
        self.budget = budget
        self.shape: tuple[int, ...] | None = None
        self.dtype: _DtypeStub | None = None
        self.fortran = False
        self.raw: bytes | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unexpected array state")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise pickle.UnpicklingError("array shape is not a tuple of sizes")
        if not isinstance(dtype, _DtypeStub):
            raise pickle.UnpicklingError("array dtype is not a plain dtype")
        if not isinstance(raw, str | bytes | bytearray):
            raise pickle.UnpicklingError("array data is not raw bytes")
        if not isinstance(raw, bytes):  # a Python 2 str read as latin-1, or a bytearray: copied
            if self.budget is None:
                raise pickle.UnpicklingError("array data is not raw bytes")
            self.budget.spend(len(raw))
            raw = raw.encode("latin1") if isinstance(raw, str) else bytes(raw)
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, bool(fortran), raw

    def to_numpy(self) -> np.ndarray:
        if self.shape is None or self.dtype is None or self.raw is None:
            raise ValueError("incomplete array record")
        dtype = self.dtype.to_numpy()
        count = math.prod(self.shape)  # exact: Python integers do not overflow
        if len(self.raw) != count * dtype.itemsize:
            raise ValueError(
                f"array of shape {self.shape} needs {count * dtype.itemsize} bytes, "
                f"has {len(self.raw)}"
            )
        array = np.frombuffer(self.raw, dtype=dtype)
        return array.reshape(self.shape, order="F" if self.fortran else "C")


_ALLOWED_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"}


class _DtypeStub:
    """Inert stand-in for a pickled NumPy dtype of plain numbers (``u1``, ``i8``, ``f4``, ...)."""

    def __init__(self, code: Any = None, *args: Any) -> None:
        if isinstance(code, bytes):
            code = code.decode("ascii", "replace")
        if code not in _ALLOWED_DTYPES:
            raise pickle.UnpicklingError(f"dtype {code!r} is not a plain number type")
        self.code: str = code
        self.order = "|"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2:
            order = state[1]
            if isinstance(order, bytes):
                order = order.decode("ascii", "replace")
            if order not in {"<", ">", "|", "="}:
                raise pickle.UnpicklingError(f"dtype byte order {order!r} is not valid")
            self.order = order

    def to_numpy(self) -> np.dtype[Any]:
        order = "<" if self.order == "=" and np.little_endian else self.order
        return np.dtype(order + self.code if order in "<>" else self.code)


def _reconstruct_stub(cls: Any, *args: Any, budget: _CopyBudget) -> _ArrayStub:
    if cls is not _ArrayStub:
        raise pickle.UnpicklingError("array reconstruction of something other than an array")
    return _ArrayStub(budget=budget)


def _latin1_encode(text: Any, encoding: Any = "latin1", *, budget: _CopyBudget) -> bytes:
    """Python 3 protocol-2 pickles write bytes as ``_codecs.encode(str, "latin1")``; this
    stand-in accepts exactly that and nothing else, within ``budget``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    budget.spend(len(text))
    return text.encode("latin1")


_STUBS: dict[tuple[str, str], Any] = {
    (module, name): stub
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name, stub in (("_reconstruct", _reconstruct_stub),)
} | {
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses to import anything.

    Only the pickle opcodes for dicts, lists, tuples, sets, strings, bytes, numbers, booleans
    and None can succeed. The three global names a pickled NumPy array uses
    (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) resolve to
    inert local stand-ins that only record a shape, a plain number dtype and raw bytes; NumPy
    itself is never called by the pickle. ``_codecs.encode`` (how Python 3 writes bytes at
    protocol 2) resolves to a stand-in that only turns a str into latin-1 bytes. Every other
    global raises :class:`pickle.UnpicklingError`. The stand-ins copy at most
    :data:`MAX_BATCH_BYTES` bytes in all (a shared string is copied at every reference).
    """

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.budget = _CopyBudget(MAX_BATCH_BYTES)

    def find_class(self, module: str, name: str) -> Any:
        stub = _STUBS.get((module, name))
        if stub is None:
            raise pickle.UnpicklingError(f"refused to construct {module}.{name}")
        if stub in (_reconstruct_stub, _latin1_encode):
            return functools.partial(stub, budget=self.budget)
        return stub


def _prescan(data: bytes) -> None:
    """Walk the opcodes of pickle ``data`` without building anything; refuse more than
    :data:`MAX_OPCODES` of them, memo indices at or beyond that (a memo index makes the
    unpickler allocate a table that large), and tuples nested more than :data:`MAX_DEPTH` deep.

    The tuple depth is followed on a simulated stack (one depth per stack item, 0 for anything
    but a tuple): the unpickler hashes a tuple it puts in a set or uses as a dict key, and
    hashing recurses in C once per level with no recursion limit, so a few hundred kilobytes of
    nested tuples would overflow the C stack (a segmentation fault, not an exception)."""
    stack: list[int] = []  # the tuple nesting depth of each item on the unpickler's stack
    marks: list[int] = []  # stack heights at each MARK
    memo: dict[int, int] = {}
    count = 0
    for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
        count += 1
        if count > MAX_OPCODES:
            raise ValueError(f"more than {MAX_OPCODES} pickle opcodes")
        name = opcode.name
        index = arg if isinstance(arg, int) else -1
        if name in _MEMO_PUTS | _MEMO_GETS and not 0 <= index < MAX_OPCODES:
            raise ValueError(f"pickle memo index {arg!r} is out of range")
        fence = marks[-1] if marks else 0
        if name == "POP" and len(stack) == fence and marks:  # the unpickler pops the mark
            marks.pop()
            continue
        before = opcode.stack_before
        popped: list[int] = []
        if pickletools.markobject in before:
            if not marks:
                raise ValueError(f"pickle opcode {name} without a MARK")
            fence = marks.pop()
            popped = stack[fence:]
            del stack[fence:]
            n = before.index(pickletools.markobject)
            fence = marks[-1] if marks else 0
        else:
            n = len(before)
        if len(stack) - n < fence or (name in _MEMO_PUTS and len(stack) <= fence):
            raise ValueError(f"pickle stack underflow at opcode {name}")
        if n:
            popped = stack[len(stack) - n :] + popped
            del stack[len(stack) - n :]
        if name in _MEMO_PUTS:
            memo[index] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = popped[0]
        for item in opcode.stack_after:
            if item is pickletools.markobject:
                marks.append(len(stack))
            elif name in _TUPLES:
                depth = 1 + max(popped, default=0)
                if depth > MAX_DEPTH:
                    raise ValueError(f"tuples nested more than {MAX_DEPTH} deep")
                stack.append(depth)
            elif name in _MEMO_GETS:
                stack.append(memo.get(index, 0))
            elif name in {"DUP", "MEMOIZE"}:
                stack.append(popped[0])
            else:
                stack.append(0)


class _Materializer:
    """Replaces array stand-ins by arrays throughout a loaded object graph.

    Each container is converted once and the result reused wherever the pickle shared it (the
    memo, keyed by identity), so shared references cost nothing; the elements of all converted
    dicts, lists and tuples together may not exceed :data:`MAX_ELEMENTS`, nor their nesting
    :data:`MAX_DEPTH`. Cycles exceed the depth and are refused.
    """

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}
        self.keep: list[Any] = []  # keeps memo keys alive so ids are not reused
        self.elements = 0

    def _count(self, size: int) -> None:
        self.elements += size
        if self.elements > MAX_ELEMENTS:
            raise ValueError(f"more than {MAX_ELEMENTS} container elements in all")

    def convert(self, obj: Any, depth: int = 0) -> Any:
        if isinstance(obj, _ArrayStub):
            return obj.to_numpy()
        if isinstance(obj, _DtypeStub):
            raise ValueError("a bare dtype where data was expected")
        if not isinstance(obj, dict | list | tuple):
            return obj
        if depth >= MAX_DEPTH:
            raise ValueError(f"containers nested more than {MAX_DEPTH} deep")
        found = self.memo.get(id(obj))
        if found is not None:
            return found
        self._count(len(obj))
        result: Any
        if isinstance(obj, dict):
            result = {key: self.convert(value, depth + 1) for key, value in obj.items()}
        else:
            result = type(obj)(self.convert(value, depth + 1) for value in obj)
        self.memo[id(obj)] = result
        self.keep.append(obj)
        return result


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (the unpickler's own messages may span two)."""
    return " ".join(str(err).split())


def restricted_load(file: IO[bytes], *, source: str = "pickle") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler` (Python 2 pickles are read with
    ``encoding="bytes"``), within the bounds of the module docstring; anything refused,
    malformed or too large raises :class:`DataError` naming ``source``."""
    data = file.read(MAX_BATCH_BYTES + 1)
    if len(data) > MAX_BATCH_BYTES:
        raise DataError(
            f"{source!r} holds more than {MAX_BATCH_BYTES} bytes, more than a CIFAR-10 batch "
            "can; it is not one"
        )
    try:
        _prescan(data)
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _Materializer().convert(obj)
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{source!r} was refused: {_one_line(err)}; a CIFAR-10 batch holds only dicts, lists, "
            "bytes, numbers and arrays, so this file is not one (or was tampered with)"
        ) from None
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        OverflowError,
        MemoryError,
    ) as err:
        raise DataError(
            f"{source!r} is truncated, corrupt or too large ({type(err).__name__}: "
            f"{_one_line(err)})"
        ) from None


def _key(batch: dict[Any, Any], name: str) -> Any:
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise KeyError(name)


def load_cifar_batch(path: str | Path, *, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch → ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``."""
    path = Path(path)
    data = read_capped(path, MAX_BATCH_BYTES, "a CIFAR-10 batch")
    batch = restricted_load(io.BytesIO(data), source=str(path))
    if not isinstance(batch, dict):
        raise DataError(f"{str(path)!r} is not a CIFAR-10 batch: it holds a {type(batch).__name__}")
    try:
        raw, labels_list = _key(batch, "data"), _key(batch, "labels")
    except KeyError as err:
        raise DataError(f"{str(path)!r} is not a CIFAR-10 batch: no {err} entry") from None
    if isinstance(raw, bytes | bytearray):
        raw = np.frombuffer(raw, dtype=np.uint8)
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
        raise DataError(f"{str(path)!r}: 'data' is not uint8 pixel data")
    if raw.size % 3072:
        raise DataError(f"{str(path)!r}: 'data' holds {raw.size} bytes, not a multiple of 3072")
    if raw.ndim > 1 and raw.shape[1:] not in ((3072,), (3, 32, 32)):
        raise DataError(
            f"{str(path)!r}: 'data' has shape {raw.shape}; a CIFAR-10 batch holds one row of "
            "3072 bytes per image (the 1024 red, then green, then blue pixels), shape (N, 3072)"
        )
    images = raw.reshape(-1, 3, 32, 32)
    if not isinstance(labels_list, list | tuple | np.ndarray) or not all(
        isinstance(v, int | np.integer) for v in labels_list
    ):
        raise DataError(f"{str(path)!r}: 'labels' is not a list of integers")
    try:
        labels = np.asarray(labels_list, dtype=np.int64)
    except OverflowError:  # a pickled int past 64 bits (its digits may be too many to print)
        raise DataError(
            f"{str(path)!r} holds a label outside 0..{num_classes - 1} (past 64 bits); "
            "the file is corrupt"
        ) from None
    if labels.shape != (images.shape[0],):
        raise DataError(
            f"{str(path)!r} holds {images.shape[0]} images but {labels.shape[0]} labels"
        )
    check_labels(labels, num_classes, path)
    return images, labels
