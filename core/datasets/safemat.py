"""MATLAB v5 ground-truth files (``gnd_*.mat``) read within a memory budget.

scipy's ``loadmat`` inflates each zlib-compressed element of a file whole before it reads it,
so a file of a few kilobytes can make it allocate gigabytes (a compressed run of zeros). Before
scipy sees a file, ``load_mat`` reads it (bounded), walks its top-level elements (a 128-byte
header, then tagged elements) and inflates the compressed ones in chunks, counting, and refuses
a file whose elements would hold more than ``MAX_MAT_BYTES``. Uncompressed elements are bounded
by the file's own size. MAT v4 files have no compression, and v7.3 files are HDF5, which scipy
refuses; both pass to scipy as they are.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import scipy.io

from core.datasets.types import MAX_LABEL_FILE_BYTES, GroundTruthError
from core.fs import read_limited

MAX_MAT_BYTES = 1 << 30          # inflated bytes a ground-truth .mat may hold; real ones hold a few MB
HEADER = 128                     # the v5 header: text, subsystem offset, version, endian indicator
V5 = 0x0100                      # the header's version field of a v5 file (v7.3, HDF5: 0x0200)
MI_COMPRESSED = 15               # a zlib-compressed element
CHUNK = 1 << 20


class UnsafeMat(GroundTruthError):
    """A .mat file whose compressed elements would inflate past the budget."""


def inflated_size(body: bytes, budget: int) -> int:
    """Bytes that the zlib stream ``body`` inflates to, counted in chunks; ``UnsafeMat`` as
    soon as the count passes ``budget`` (nothing larger than one chunk is ever held)."""
    inflate = zlib.decompressobj()
    size, rest = 0, body
    while rest and not inflate.eof:
        try:
            size += len(inflate.decompress(rest, CHUNK))
        except zlib.error as exc:
            raise ValueError(f"a compressed element is corrupt ({exc})") from None
        if size > budget:
            raise UnsafeMat(f"refused: its compressed data inflate to more than {budget:,} bytes "
                            "(a decompression bomb?)")
        rest = inflate.unconsumed_tail
    return size + len(inflate.flush())


def check_mat(data: bytes, limit: int | None = None) -> int:
    """Total bytes the top-level elements of the MAT v5 file ``data`` hold once inflated
    (``UnsafeMat`` past ``limit``, default ``MAX_MAT_BYTES``); 0 for a file without the v5
    endian indicator (v4, or not a MAT file: scipy decides)."""
    limit = MAX_MAT_BYTES if limit is None else limit
    if len(data) < HEADER or data[126:128] not in (b"IM", b"MI"):
        return 0
    order = "<" if data[126:128] == b"IM" else ">"
    if struct.unpack_from(order + "H", data, 124)[0] != V5:
        return 0                                     # v7.3 is HDF5, which scipy refuses
    pos, total = HEADER, 0
    while pos + 8 <= len(data):
        kind, nbytes = struct.unpack_from(order + "II", data, pos)
        if kind >> 16:                               # small element: its data sit in the tag
            pos += 8
            continue
        body = data[pos + 8:pos + 8 + nbytes]
        if kind == MI_COMPRESSED:
            total += inflated_size(body, limit - total)
            pos += 8 + nbytes
        else:
            total += len(body)
            pos += 8 + nbytes + (-nbytes % 8)        # elements are padded to 8 bytes
        if total > limit:
            raise UnsafeMat(f"refused: its elements hold more than {limit:,} bytes")
    return total


def load_mat(path: str | Path) -> dict[str, Any]:
    """``scipy.io.loadmat`` of a ground-truth file that ``check_mat`` let through."""
    data = read_limited(path, MAX_LABEL_FILE_BYTES)
    check_mat(data)
    return scipy.io.loadmat(io.BytesIO(data))
