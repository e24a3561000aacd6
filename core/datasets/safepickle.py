"""A restricted unpickler for the data files that ship as pickles (revisitop ground truth,
CIFAR-10 batches): pickles from the internet can run code when loaded, so this one only
rebuilds builtin containers, bytes and numpy arrays, and refuses everything else by name.

The callables it allows could still be asked for arrays or byte strings of any size
(``_reconstruct`` with a shape of 10^12), so each allocation they make is checked against a
budget (``MAX_PICKLE_ALLOCATION`` by default) before it happens."""
from __future__ import annotations

import codecs
import math
import pickle
from typing import IO, Any

import numpy as np
from numpy._core import multiarray, numeric

from core.datasets.types import GroundTruthError

MAX_PICKLE_ALLOCATION = 1 << 30   # bytes the allowed callables may allocate in all; real files need a few MB
                                  # (a CIFAR-10 batch: 30 MB)


class UnsafePickle(GroundTruthError, pickle.UnpicklingError):
    """A data pickle that asks for anything but containers and numpy arrays, or for more memory
    than its budget."""


class _Budget:
    """What the allowed callables of one load may still allocate."""

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise UnsafePickle(f"refused: the pickle asks for {what} of {nbytes:,} bytes, more than the "
                               f"{self.limit:,} a data pickle may allocate")
        self.left -= nbytes


def _nbytes(shape: Any, dtype: Any) -> int:
    dims = [int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
    if any(d < 0 for d in dims):
        raise UnsafePickle(f"refused: negative array shape {dims}")
    return math.prod(dims) * np.dtype(dtype).itemsize


def _bounded_globals(budget: _Budget) -> dict[tuple[str, str], Any]:
    """The callables a data pickle may use, each checking what it would allocate."""

    def reconstruct(subtype, shape, dtype):
        budget.take(_nbytes(shape, dtype), "an array")
        return multiarray._reconstruct(np.ndarray if subtype is ndarray else subtype, shape, dtype)

    def scalar(dtype, *args):
        budget.take(np.dtype(dtype).itemsize, "a scalar")
        return multiarray.scalar(dtype, *args)

    def ndarray(shape, dtype=float, buffer=None, *args, **kwargs):
        """``numpy.ndarray``, as a constructor (checked) and as the type ``_reconstruct`` is given."""
        if buffer is None:
            budget.take(_nbytes(shape, dtype), "an array")
        return np.ndarray(shape, dtype, buffer, *args, **kwargs)

    def sized(kind):
        def make(source=b"", *args):
            if isinstance(source, int):
                budget.take(source, f"a {kind.__name__}")
            return kind(source, *args)
        return make

    def encode(obj, encoding="utf-8", errors="strict"):
        if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "utf8"):
            raise UnsafePickle(f"refused to encode with {encoding!r}: a data pickle only stores text")
        return codecs.encode(obj, encoding, errors)

    return {
        **{(f"numpy.{core}.multiarray", name): fn for core in ("core", "_core")
           for name, fn in (("_reconstruct", reconstruct), ("scalar", scalar))},
        **{(f"numpy.{core}.numeric", "_frombuffer"): numeric._frombuffer for core in ("core", "_core")},   # protocol 5
        ("numpy", "ndarray"): ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): encode,                                   # bytes in protocol-2 pickles
        **{(module, t.__name__): t for module in ("builtins", "__builtin__")    # __builtin__: protocol 2
           for t in (set, frozenset)},
        **{(module, t.__name__): sized(t) for module in ("builtins", "__builtin__") for t in (bytes, bytearray)},
    }


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], encoding: str, limit: int) -> None:
        super().__init__(file, encoding=encoding)
        self._globals = _bounded_globals(_Budget(limit))

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickle(f"refused to load {module}.{name}: a data pickle holds only lists, "
                               f"dicts and numpy arrays") from None


def safe_load(fh: IO[bytes], encoding: str = "ASCII", limit: int = MAX_PICKLE_ALLOCATION) -> Any:
    """Unpickle ``fh`` with only containers and numpy arrays allowed, allocating at most ``limit``
    bytes through them. ``encoding="bytes"`` reads Python 2 pickles whose strings are bytes
    (CIFAR-10's batches)."""
    return _DataUnpickler(fh, encoding, limit).load()
