"""Which on-disk format for a gallery's descriptors: append, open and read at 10k to 1M × 1280.

Candidates, each holding ids and float32 vectors, appended to in pieces, none compressed:

- ``store``: the project's ``core.cache.store`` (one append-only ``.f32`` file of rows, one
  JSON-lines file of ids, a manifest replaced atomically);
- ``npy-chunks``: one ``.npy`` per append plus its ids in a JSON file, and a manifest listing them;
- ``zarr``: a 2-d zarr array (chunks of 4096 rows) resized by ``append``, ids in a 1-d string array;
- ``lancedb``: a LanceDB table (id, fixed-size list of 1280 float32), ``table.add`` per append.

Per size: the cost of appending 1,000 vectors to the gallery, opening it (ids in memory, vectors
ready to read), reading every vector as one array, and reading 1,000 random rows. Vectors are
random unit vectors (the formats store bytes; their values do not change these costs). The store
and the ``.npy`` chunks fsync each append (a crash keeps what was committed); zarr and LanceDB are
measured as they come, without fsync, which favours them on appends. zarr and
LanceDB are not project dependencies: ``pip install --target DIR zarr lancedb`` and run with
``PYTHONPATH=DIR``; a format that does not import is reported as missing.

    python benchmarks/bench_store_formats.py --sizes 10000 100000 1000000 --dir /tmp/formats
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import load_average, write_result

from core.cache import store
from core.files import write_json, write_npy

DIM = 1280
BLOCK = 50_000          # rows written at a time when building a gallery
APPEND = 1_000


def _blocks(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        x = rng.standard_normal((m, DIM), dtype=np.float32)
        yield [f"img{start + i:07d}.jpg" for i in range(m)], x / np.linalg.norm(x, axis=1, keepdims=True)


class Store:
    def add(self, d: Path, ids: list[str], x: np.ndarray) -> None:
        store.append(d, ids, ["0:0:0:0"] * len(ids), x)

    def open(self, d: Path):
        c = store.open_contents(d)
        return c.ids, c.vectors

    def read(self, handle) -> np.ndarray:
        return np.asarray(handle[1]).copy()

    def rows(self, handle, idx: np.ndarray) -> np.ndarray:
        return handle[1][idx]


class NpyChunks:
    def add(self, d: Path, ids: list[str], x: np.ndarray) -> None:
        manifest = json.loads((d / "manifest.json").read_text()) if (d / "manifest.json").exists() else []
        name = f"chunk-{len(manifest):06d}"
        write_npy(d / f"{name}.npy", x)                       # atomic and fsynced, as the store's appends
        write_json(d / f"{name}.ids.json", ids)
        write_json(d / "manifest.json", [*manifest, name])

    def open(self, d: Path):
        names = json.loads((d / "manifest.json").read_text())
        ids = [i for n in names for i in json.loads((d / f"{n}.ids.json").read_text())]
        return ids, [np.load(d / f"{n}.npy", mmap_mode="r") for n in names]

    def read(self, handle) -> np.ndarray:
        return np.concatenate(handle[1])

    def rows(self, handle, idx: np.ndarray) -> np.ndarray:
        starts = np.cumsum([0] + [len(c) for c in handle[1]])
        chunk = np.searchsorted(starts, idx, side="right") - 1
        return np.stack([handle[1][c][i - starts[c]] for c, i in zip(chunk, idx)])


class Zarr:
    def __init__(self) -> None:
        import zarr

        self.zarr = zarr

    def add(self, d: Path, ids: list[str], x: np.ndarray) -> None:
        if not d.exists():
            group = self.zarr.open_group(str(d), mode="w")
            group.create_array("vectors", shape=(0, DIM), chunks=(4096, DIM), dtype="float32", compressors=None)
            group.create_array("ids", shape=(0,), chunks=(65536,), dtype=str)
        group = self.zarr.open_group(str(d), mode="a")
        group["vectors"].append(x)
        group["ids"].append(np.array(ids, dtype=object))

    def open(self, d: Path):
        group = self.zarr.open_group(str(d), mode="r")
        return list(group["ids"][:]), group["vectors"]

    def read(self, handle) -> np.ndarray:
        return handle[1][:]

    def rows(self, handle, idx: np.ndarray) -> np.ndarray:
        return handle[1].get_orthogonal_selection((np.sort(idx), slice(None)))


class Lance:
    def __init__(self) -> None:
        import lancedb
        import pyarrow as pa

        self.lancedb, self.pa = lancedb, pa

    def _table(self, ids: list[str], x: np.ndarray):
        vec = self.pa.FixedSizeListArray.from_arrays(self.pa.array(x.ravel(), self.pa.float32()), DIM)
        return self.pa.table({"id": self.pa.array(ids), "vector": vec})

    def add(self, d: Path, ids: list[str], x: np.ndarray) -> None:
        db = self.lancedb.connect(str(d))
        if "g" in db.list_tables().tables:
            db.open_table("g").add(self._table(ids, x))
        else:
            db.create_table("g", self._table(ids, x))

    def open(self, d: Path):
        table = self.lancedb.connect(str(d)).open_table("g")
        return table.to_lance().to_table(columns=["id"])["id"].to_pylist(), table

    def read(self, handle) -> np.ndarray:
        col = handle[1].to_lance().to_table(columns=["vector"])["vector"].combine_chunks()
        return col.values.to_numpy().reshape(-1, DIM)

    def rows(self, handle, idx: np.ndarray) -> np.ndarray:
        col = handle[1].to_lance().take(np.sort(idx).tolist(), columns=["vector"])["vector"].combine_chunks()
        return col.values.to_numpy().reshape(-1, DIM)


FORMATS: dict[str, Callable[[], object]] = {"store": Store, "npy-chunks": NpyChunks, "zarr": Zarr, "lancedb": Lance}


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(fmt, d: Path, n: int) -> dict:
    """Build a gallery of ``n`` rows in ``fmt`` (BLOCK rows per append), then time one append of
    1,000, an open, a full read and a read of 1,000 random rows."""
    shutil.rmtree(d, ignore_errors=True)
    build_start = time.perf_counter()
    for ids, x in _blocks(n):
        fmt.add(d, ids, x)
    build = time.perf_counter() - build_start
    (new_ids, new), = _blocks(APPEND, seed=1)
    new_ids = [f"new-{i}" for i in new_ids]
    append, _ = _timed(lambda: fmt.add(d, new_ids, new))
    open_s, handle = _timed(lambda: fmt.open(d))
    assert len(handle[0]) == n + APPEND
    read_s, full = _timed(lambda: fmt.read(handle))
    np.testing.assert_array_equal(full[-APPEND:], new)
    del full
    idx = np.random.default_rng(2).choice(n + APPEND, APPEND, replace=False)
    rows_s, _ = _timed(lambda: fmt.rows(handle, idx))
    size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    shutil.rmtree(d, ignore_errors=True)
    return {"n": n, "build_s": build, "append_1000_s": append, "open_s": open_s, "read_all_s": read_s,
            "read_1000_random_rows_s": rows_s, "disk_mb": size / 1e6, "load_average": load_average()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-store-formats"))
    ap.add_argument("--name", default="store_formats")
    a = ap.parse_args()
    rows, missing = [], {}
    for name in a.formats:
        try:
            fmt = FORMATS[name]()
        except ImportError as exc:
            missing[name] = str(exc)
            continue
        for n in a.sizes:
            row = {"format": name, **measure(fmt, a.dir / name, n)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_result(a.name, {"dim": DIM, "append": APPEND, "rows": rows, "missing": missing,
                          "command": f"python benchmarks/bench_store_formats.py --sizes {' '.join(map(str, a.sizes))}"})


if __name__ == "__main__":
    main()
