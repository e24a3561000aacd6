"""The append-only store of one descriptor cache: what ``core.cache.descriptors`` keeps on disk.

Layout of a cache directory:

- ``vectors-<G>.f32``: float32 rows, ``dim`` values each, row-major, no header; appended to.
- ``rows-<G>.jsonl``: one line per append, ``[[ids...], [fingerprints...]]`` of its rows (ASCII
  JSON: an id with a line break stays on its line); appended to.
- ``manifest.json``: the commit point, replaced atomically: the generation ``G``, ``dim``, the
  committed number of rows and byte length of the rows file, the dead rows (an id replaced or
  removed), and the failures (id -> reason, fingerprint).
- ``whitening.npz``: the learned PCA-whitening of a whitened config.

An append writes past the committed end of both files, fsyncs them, then replaces the manifest:
a killed append leaves the manifest as it was, and the bytes it wrote past the committed end are
cut off by the next append, so it loses at most what it was appending. Opening reads the manifest
and the rows file (ids and fingerprints) and memory-maps the vectors: no vector is read until it
is used, and every process that opens the gallery shares the page cache. Dead rows are dropped by
``rewrite``, which writes generation ``G+1`` beside ``G`` and commits it the same way.

Why this format (``benchmarks/bench_store_formats.py``, ``artifacts/bench/store_formats.json``):
the whole gallery is one memory-mapped float32 array, which exact search, faiss and the re-rankers
take as it is, without a copy; ``.npy`` chunks would need a concatenation (a read of every vector)
and zarr or LanceDB a decode into memory, for no gain in append cost.
"""
from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from core.files import write_json, write_npz

MANIFEST = "manifest.json"
WHITENING = "whitening.npz"
FORMAT = 1
REWRITE_ROWS = 65_536            # rows copied at a time by ``rewrite``: bounded memory at any size


class StoreError(ValueError):
    """Vectors that cannot go into a store (another dimension, a non-finite value), with the reason."""


@dataclass
class Manifest:
    """What the store holds, as committed: rows ``[0, n_rows)`` of generation ``generation``."""

    generation: int = 0
    dim: int = 0
    n_rows: int = 0
    rows_bytes: int = 0
    dead: list[int] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)    # id -> [reason, fingerprint]
    format: int = FORMAT

    @property
    def vectors_file(self) -> str:
        return f"vectors-{self.generation}.f32"

    @property
    def rows_file(self) -> str:
        return f"rows-{self.generation}.jsonl"


@dataclass
class Contents:
    """The live rows of a store: ids, fingerprints and vectors in row order, and the failures."""

    ids: list[str]
    fingerprints: list[str]
    vectors: np.ndarray             # [n, dim] float32: a read-only memory map when no row is dead
    failures: dict[str, tuple[str, str]]


def read_manifest(directory: Path) -> Manifest | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    return Manifest(**json.loads(path.read_text()))


def read_rows(directory: Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """(ids, fingerprints) of every committed row, dead ones included."""
    if not manifest.n_rows:
        return [], []
    with open(directory / manifest.rows_file, "rb") as fh:
        text = fh.read(manifest.rows_bytes).decode("ascii")
    appends = json.loads("[" + text.rstrip("\n").replace("\n", ",") + "]")
    return list(chain.from_iterable(a[0] for a in appends)), list(chain.from_iterable(a[1] for a in appends))


def map_vectors(directory: Path, manifest: Manifest) -> np.ndarray:
    """Every committed row (dead ones included), memory-mapped read-only."""
    if not manifest.n_rows:
        return np.zeros((0, manifest.dim), np.float32)
    return np.memmap(directory / manifest.vectors_file, np.float32, "r", shape=(manifest.n_rows, manifest.dim))


def _file_position(vectors: np.ndarray) -> int | None:
    """Where row 0 of ``vectors`` lies in its file, for a C-contiguous float32 memory map (or a
    view of one); None for anything else."""
    mapped = getattr(vectors, "_mmap", None)
    if not isinstance(vectors, np.memmap) or mapped is None or vectors.dtype != np.float32 \
            or not vectors.flags.c_contiguous or vectors.filename is None:
        return None
    start = vectors.offset - vectors.offset % mmap.ALLOCATIONGRANULARITY       # where the mapping begins
    return start + vectors.ctypes.data - np.frombuffer(mapped, np.uint8).ctypes.data


def gather(vectors: np.ndarray, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """``vectors[rows]`` as float32. From a memory-mapped store, by positioned reads: indexing
    the map would leave every page it touched (and the kernel's fault-around neighbours) in the
    process's resident set; 20 searches re-scoring 4,096 candidates of a 1M gallery that way
    left 3.5 GB of file pages resident, read this way none (11-12 ms a query either way)."""
    position = _file_position(vectors)
    if position is None or not len(rows):
        return np.asarray(vectors[np.asarray(rows, np.int64)], np.float32)
    out = np.empty((len(rows), vectors.shape[1]), np.float32)
    size = out.shape[1] * 4
    buffer = memoryview(out).cast("B")
    fd = os.open(vectors.filename, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for i, row in enumerate(np.asarray(rows, np.int64).tolist()):
            if os.preadv(fd, [buffer[i * size:(i + 1) * size]], position + row * size) != size:
                raise StoreError(f"{vectors.filename} ends before row {row}")
    finally:
        os.close(fd)
    return out


def open_contents(directory: Path) -> Contents | None:
    """The live rows of the store in ``directory``; None if it has none yet."""
    try:
        return _open(directory)
    except FileNotFoundError:           # a rewrite committed and removed the generation just read
        return _open(directory)


def _open(directory: Path) -> Contents | None:
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    ids, fingerprints = read_rows(directory, manifest)
    vectors = map_vectors(directory, manifest)
    if manifest.dead:
        live = np.setdiff1d(np.arange(manifest.n_rows), manifest.dead)
        ids, fingerprints = [ids[i] for i in live], [fingerprints[i] for i in live]
        vectors = np.ascontiguousarray(vectors[live])
    if not ids:
        vectors = np.zeros((0, 0), np.float32)
    return Contents(ids, fingerprints, vectors, {k: (v[0], v[1]) for k, v in manifest.failures.items()})


def _row_line(ids: list[str], fingerprints: list[str]) -> bytes:
    if len(ids) != len(fingerprints):
        raise StoreError(f"{len(ids)} ids for {len(fingerprints)} fingerprints")
    return (json.dumps([ids, fingerprints]) + "\n").encode("ascii")


def _check(vectors: np.ndarray, dim: int, n: int) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    if n and (vectors.ndim != 2 or vectors.shape[0] != n):
        raise StoreError(f"expected {n} vectors as a 2-d array, got shape {vectors.shape}")
    if n and dim and vectors.shape[1] != dim:
        raise StoreError(f"vectors of dimension {vectors.shape[1]} cannot join a gallery of dimension {dim}")
    if n and not np.isfinite(vectors).all():
        raise StoreError("vectors hold NaN or infinite values")
    return vectors


def _append_bytes(path: Path, committed: int, data: bytes) -> int:
    """Cut ``path`` back to its ``committed`` length (what a killed append left past it goes),
    append ``data``, fsync; returns the new length."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        os.ftruncate(fd, committed)
        os.lseek(fd, committed, os.SEEK_SET)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return committed + len(data)


def append(directory: Path, ids: list[str], fingerprints: list[str], vectors: np.ndarray,
           dead: Iterable[int] = (), failures: dict[str, tuple[str, str]] | None = None) -> Manifest:
    """Append rows, mark rows ``dead`` and replace the failures (None: keep them), in one commit.
    Costs the new rows only. The caller holds the cache's lock."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(directory) or Manifest(generation=1)
    vectors = _check(vectors, manifest.dim if manifest.n_rows else 0, len(ids))
    if ids:
        manifest.dim = manifest.dim if manifest.n_rows else int(vectors.shape[1])
        _append_bytes(directory / manifest.vectors_file, manifest.n_rows * manifest.dim * 4, vectors.tobytes())
        manifest.rows_bytes = _append_bytes(directory / manifest.rows_file, manifest.rows_bytes,
                                            _row_line(ids, fingerprints))
        manifest.n_rows += len(ids)
    manifest.dead = sorted(set(manifest.dead).union(dead))
    if failures is not None:
        manifest.failures = {k: list(v) for k, v in sorted(failures.items())}
    write_json(directory / MANIFEST, asdict(manifest))
    return manifest


def rewrite(directory: Path, ids: list[str], fingerprints: list[str], blocks: Iterable[np.ndarray],
            failures: dict[str, tuple[str, str]], whitening: dict[str, np.ndarray] | None = None) -> Manifest:
    """Write the store anew as generation G+1 (``blocks``: the vectors of ``ids`` in order, in
    pieces), commit it, then delete generation G. The caller holds the cache's lock."""
    directory.mkdir(parents=True, exist_ok=True)
    old = read_manifest(directory)
    new = Manifest(generation=(old.generation if old else 0) + 1)
    remove_uncommitted(directory, old or new)          # what an earlier, killed rewrite left
    if whitening is not None:
        write_npz(directory / WHITENING, **whitening)
    start = 0
    for block in blocks:
        block = _check(block, new.dim, len(block))
        new.dim = new.dim or int(block.shape[1])
        _append_bytes(directory / new.vectors_file, start * new.dim * 4, block.tobytes())
        start += len(block)
    if start != len(ids):
        raise StoreError(f"{start} vectors for {len(ids)} ids")
    new.n_rows = len(ids)
    new.rows_bytes = _append_bytes(directory / new.rows_file, 0, _row_line(ids, fingerprints)) if ids else 0
    new.failures = {k: list(v) for k, v in sorted(failures.items())}
    write_json(directory / MANIFEST, asdict(new))
    remove_uncommitted(directory, new)
    return new


def compact(directory: Path, fingerprints: dict[str, str] | None = None) -> Manifest | None:
    """Drop the dead rows (and renew fingerprints from ``fingerprints``, id -> fingerprint) by a
    rewrite that copies REWRITE_ROWS rows at a time. The caller holds the cache's lock."""
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    ids, fps = read_rows(directory, manifest)
    live = np.setdiff1d(np.arange(manifest.n_rows), manifest.dead)
    mapped = map_vectors(directory, manifest)
    renewed = fingerprints or {}
    return rewrite(directory, [ids[i] for i in live], [renewed.get(ids[i], fps[i]) for i in live],
                   _blocks(mapped, live), {k: (v[0], v[1]) for k, v in manifest.failures.items()})


def _blocks(mapped: np.ndarray, rows: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), REWRITE_ROWS):
        yield np.asarray(mapped[rows[start:start + REWRITE_ROWS]])


def remove_uncommitted(directory: Path, manifest: Manifest) -> list[str]:
    """Delete the vector and row files of generations other than ``manifest``'s (left by a
    rewrite that was killed, or superseded by one). A reader that mapped them keeps its copy."""
    keep = {manifest.vectors_file, manifest.rows_file}
    removed = []
    for path in [*directory.glob("vectors-*.f32"), *directory.glob("rows-*.jsonl")]:
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def migrate_npz(directory: Path, npz: Path) -> Manifest:
    """Turn the single ``embeddings.npz`` of earlier versions into a store (vectors, ids,
    fingerprints, failures and whitening kept as they are; nothing re-embedded), then delete it.
    The caller holds the cache's lock."""
    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    ids = arrays["ids"].tolist()
    fingerprints = arrays["fingerprints"].tolist() if "fingerprints" in arrays else [""] * len(ids)
    failures = dict(zip(arrays["failed_ids"].tolist(),
                        zip(arrays["failed_reasons"].tolist(), arrays["failed_fingerprints"].tolist())))
    whitening = {k: v for k, v in arrays.items() if k.startswith("whiten_")} or None
    vectors = arrays["vectors"].reshape(len(ids), -1)
    manifest = rewrite(directory, ids, fingerprints, [vectors] if ids else [], failures, whitening)
    npz.unlink()
    return manifest
