"""The index side at a million images: build time, peak memory, search p50 and recall@10 of every
index backend (exact, HNSW by hnswlib, IVF-PQ by faiss, Milvus Lite where it fits) at 10k, 100k
and 1M vectors of dimension 1280, measured through the project's own backends
(``core.index.open_index``), faiss and hnswlib in the same run. The Pareto front at recall@10 ≥
0.95 per size is what ``core/index/choice.py``'s rule is read from.

    nice -n 10 python benchmarks/bench_scale_index.py --sizes 10000 100000 --backends exact hnsw ivfpq milvus
    nice -n 10 python benchmarks/bench_scale_index.py --sizes 1000000 --backends exact ivfpq   # background, hours

Vectors: ``common.derived_vectors`` of the 250 real Paris descriptors (tf_efficientnet_lite0 GeM,
1280-d, ``common.BENCH_CONFIG``): points between a real descriptor and one of its 10 nearest
real ones plus Gaussian noise (relative norm 0.35), renormalised, written to a memory map under
``--work`` (deleted at the end unless ``--keep``). They differ from real descriptors: they come
from 250 photos of 5 landmarks, so the gallery is 250 dense clusters of look-alikes with no
near-duplicates beyond chance, where a real million photos spread over far more content
(``bench_search.py`` measured derived vectors to be optimistic for recall at 20k). Queries are
100 further derived vectors, not in the gallery; truth is exact cosine search.

Each backend runs in its own process (``worker``), so that its peak memory is its own: the peak
of anonymous resident memory (the index's structures and buffers; sampled every 0.1 s) and the
peak resident set (``VmHWM``, which also counts the memory-mapped vectors' pages it touched). Each
invocation merges its rows into ``artifacts/bench/scale_index.json`` (key: size and backend).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import bench_dir, derived_vectors, load_average, paris_descriptors, write_result  # noqa: E402

DIM = 1280
N_QUERIES = 100
TIMED_QUERIES = 30           # one-at-a-time queries timed for p50 (exact at 1M costs ~0.1-1 s each)
K = 10
NAME = "scale_index"


def vectors_file(work: Path, n: int) -> Path:
    return work / f"derived-{n}.f32"


def make_vectors(work: Path, n: int) -> None:
    """``n`` gallery + N_QUERIES query vectors in a memory map, and the exact top-10 of the queries."""
    path = vectors_file(work, n)
    if path.exists() and path.with_suffix(".truth.npy").exists():
        return
    base = paris_descriptors()
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.float32, (n + N_QUERIES, DIM))
    derived_vectors(base, n + N_QUERIES, DIM, seed=n, chunk=20_000, out=out)    # 20k rows: ~0.5 GB of temporaries
    out.flush()
    del out
    os.replace(path.with_suffix(".tmp.npy"), path)
    from core.index import ExactIndex

    data = np.load(path, mmap_mode="r")
    truth = ExactIndex(data[:n]).search(np.asarray(data[n:]), K)[0]
    np.save(path.with_suffix(".truth.npy"), truth)


class MemoryPeak:
    """The peak of this process's anonymous resident memory (RssAnon), sampled in a thread."""

    def __init__(self) -> None:
        self.peak_mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mb = max(self.peak_mb, self.status("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_mb, self.status("RssAnon"))


def worker(work: Path, n: int, method: str) -> dict:
    """Build ``method``'s index of the first ``n`` vectors and measure it (run in a subprocess)."""
    from core.cache.descriptors import Embeddings
    from core.config import EmbeddingConfig
    from core.index import open_index, recall_at, settings_from

    data = np.load(vectors_file(work, n), mmap_mode="r")
    gallery, queries = data[:n], np.ascontiguousarray(data[n:])
    truth = np.load(vectors_file(work, n).with_suffix(".truth.npy"))
    directory = work / f"index-{n}-{method}"
    shutil.rmtree(directory, ignore_errors=True)               # always a build, never a load of an earlier one
    directory.mkdir()
    emb = Embeddings("scale", EmbeddingConfig(), [f"{i:07d}" for i in range(n)], gallery, directory)
    settings = settings_from(method, "cosine", {"milvus_uri": str(directory / "milvus.db")})
    rss0 = MemoryPeak.status("VmRSS")          # the interpreter, NumPy and the project's imports
    memory, anon0, start = MemoryPeak(), MemoryPeak.status("RssAnon"), time.perf_counter()
    index = open_index(emb, settings)
    build_s = time.perf_counter() - start
    peak_anon = memory.stop() - anon0
    figures = index.figures()
    efforts = [None] if figures.params.effort is None else [None, 2 * int(figures.params.effort_value() or 1)]
    rows = []
    for effort in efforts:
        searcher = index if effort is None else index.with_effort(effort)
        found = searcher.search(queries, K)[0]
        times = []
        for q in queries[:TIMED_QUERIES]:
            t = time.perf_counter()
            searcher.search(q[None], K)
            times.append(time.perf_counter() - t)
        rows.append({"effort": searcher.figures().params.effort_value(), "p50_ms": float(np.median(times)) * 1000,
                     "recall@10": recall_at(found, truth, K)})
    return {"n": n, "backend": method, "params": figures.describe(), "build_s": build_s,
            "peak_anon_mb": peak_anon, "rss_before_mb": rss0, "peak_rss_mb": MemoryPeak.status("VmHWM"), "settings": rows,
            "load_average": load_average()}


def merged(rows: list[dict]) -> list[dict]:
    """``rows`` added to those already in the JSON (the newest row of a size and backend wins)."""
    path = bench_dir() / f"{NAME}.json"
    old = json.loads(path.read_text()).get("rows", []) if path.exists() else []
    keys = {(r["n"], r["backend"]) for r in rows}
    return sorted([r for r in old if (r["n"], r["backend"]) not in keys] + rows, key=lambda r: (r["n"], r["backend"]))


def front(rows: list[dict]) -> dict[str, dict]:
    """Per size: the fastest measured setting at recall@10 ≥ RECALL_TARGET (exact has recall 1)."""
    from core.index.choice import Measured, default_at_size

    out = {}
    for n in sorted({r["n"] for r in rows}):
        points = [Measured(r["backend"], s["p50_ms"], s["recall@10"]) for r in rows if r["n"] == n
                  for s in r["settings"]]
        best = default_at_size(points)
        out[str(n)] = {"backend": best.backend, "p50_ms": best.p50_ms, "recall@10": best.recall_at_10} if best else {}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--backends", nargs="+", default=["exact", "hnsw", "ivfpq"])
    p.add_argument("--work", type=Path, default=Path("/tmp/cbir-scale-index"))
    p.add_argument("--keep", action="store_true", help="keep the vectors and indexes under --work")
    p.add_argument("--worker", nargs=2, metavar=("N", "BACKEND"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.worker:
        print(json.dumps(worker(a.work, int(a.worker[0]), a.worker[1])))
        return 0
    rows = []
    try:
        for n in a.sizes:
            make_vectors(a.work, n)
            for method in a.backends:
                done = subprocess.run([sys.executable, __file__, "--work", str(a.work), "--worker", str(n), method],
                                      capture_output=True, text=True)
                if done.returncode:
                    print(f"{method} at {n}: failed\n{done.stderr[-2000:]}")
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]))
                all_rows = merged(rows)
                write_result(NAME, {"vectors": "common.derived_vectors of the 250 Paris lite0 GeM descriptors, 1280-d",
                                    "queries": N_QUERIES, "timed_queries": TIMED_QUERIES, "rows": all_rows,
                                    "default_by_size": front(all_rows)})
    finally:
        if not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
