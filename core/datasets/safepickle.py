"""A restricted unpickler for the data files that ship as pickles (revisitop ground truth,
CIFAR-10 batches): pickles from the internet can run code when loaded, so this one only
rebuilds builtin containers, bytes and numpy arrays, and refuses everything else by name."""
from __future__ import annotations

import codecs
import pickle
from typing import IO, Any

import numpy as np
from numpy._core import multiarray, numeric

_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{(f"numpy.{core}.multiarray", name): getattr(multiarray, name)
       for core in ("core", "_core") for name in ("_reconstruct", "scalar")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): numeric._frombuffer for core in ("core", "_core")},   # protocol 5
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,                    # bytes in protocol-2 pickles
    **{(module, t.__name__): t for module in ("builtins", "__builtin__")       # __builtin__: protocol 2
       for t in (set, frozenset, bytes, bytearray)},
}


class UnsafePickle(pickle.UnpicklingError):
    """A data pickle that asks for anything but containers and numpy arrays."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickle(f"refused to load {module}.{name}: a data pickle holds only lists, "
                               f"dicts and numpy arrays") from None


def safe_load(fh: IO[bytes], encoding: str = "ASCII") -> Any:
    """Unpickle ``fh`` with only containers and numpy arrays allowed. ``encoding="bytes"`` reads
    Python 2 pickles whose strings are bytes (CIFAR-10's batches)."""
    return _DataUnpickler(fh, encoding=encoding).load()
