"""Nearest-neighbour search: exact (NumPy matrix product), Annoy, faiss (flat and HNSW) and
hnswlib on the same vectors.

    python benchmarks/bench_search.py                       # paris, 100k-512, 100k-2048, 1m-512
    python benchmarks/bench_search.py --datasets paris 100k-512 --queries 100

Datasets: the real Paris descriptors (tf_efficientnet_lite0 GeM, 1280-d, queries are perturbed
gallery vectors) and N × D vectors derived from them (``common.derived_vectors``: points between
real neighbours plus noise, mapped to D dimensions). 1M × 2048 (8 GB of float32 before any index
copy) is left out on this 24 GB machine shared by four people; 2048-d stops at 100k.

Each library runs in its own subprocess, so that its build time, index size on disk and resident
memory (RSS after build and queries minus RSS with the vectors loaded) are its own. Queries are
answered one at a time with k = 100 (latency p50/p95, queries/s); recall@10 and recall@100 are
measured against exact search; ``speedup_vs_exact`` is exact p50 / the row's p50 in the same run.
Writes ``artifacts/bench/search.json`` and prints the Annoy Pareto front of each dataset.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_PARIS, derived_vectors, paris_descriptors, percentiles_ms, rss_mb, write_result

K = 100
DATASETS = {"paris": (0, 0), "100k-512": (100_000, 512), "100k-2048": (100_000, 2048),
            "1m-512": (1_000_000, 512), "1m-2048": (1_000_000, 2048)}
# Annoy trees per dataset size: every (n_trees, search_k) pair is one point of the Pareto front.
ANNOY_TREES = {"small": (10, 25, 50, 100), "large": (25, 50, 100)}
ANNOY_SEARCH_K = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
HNSW_EF = (100, 128, 192, 256, 384, 512)
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 100


# ------------------------------------------------------------------ libraries (run in a subprocess)

def _measure(search_one, queries: np.ndarray, truth: np.ndarray, rss0: float) -> dict:
    """Latency of one-at-a-time queries, recall against ``truth``, and the resident memory the
    library holds (measured here, while its index is alive) above ``rss0``."""
    search_one(queries[0])
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        idx = search_one(q)
        times.append(time.perf_counter() - start)
        found.append(np.asarray(idx)[:K])
    return {**percentiles_ms(times), "qps": len(queries) / sum(times),
            "recall@10": recall(found, truth, 10), "recall@100": recall(found, truth, 100),
            "rss_mb": rss_mb() - rss0}


def recall(found: list[np.ndarray], truth: np.ndarray, k: int) -> float:
    """Mean share of the exact top-k present in the approximate top-k."""
    return float(np.mean([len(np.intersect1d(f[:k], t[:k])) / k for f, t in zip(found, truth)]))


def _disk_bytes(save, folder: Path) -> int:
    path = folder / "index.bin"
    save(str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def run_exact(vectors, queries, truth, folder, args) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.index import ExactIndex

    start = time.perf_counter()
    index = ExactIndex(vectors)
    build = time.perf_counter() - start
    row = _measure(lambda q: index.search(q, K)[0][0], queries, truth, args["rss0"])
    start = time.perf_counter()
    index.search(queries, K)
    row["batch_qps"] = len(queries) / (time.perf_counter() - start)
    return [{"params": {}, "build_s": build, "disk_bytes": int(vectors.nbytes), **row}]


def run_annoy(vectors, queries, truth, folder, args) -> list[dict]:
    from annoy import AnnoyIndex

    rows = []
    for n_trees in args["trees"]:
        start = time.perf_counter()
        index = AnnoyIndex(vectors.shape[1], "angular")
        index.set_seed(1234)
        for i, v in enumerate(vectors):
            index.add_item(i, v)
        index.build(n_trees, n_jobs=-1)
        build = time.perf_counter() - start
        disk = _disk_bytes(index.save, folder)
        for sk in args["search_k"]:
            row = _measure(lambda q: index.get_nns_by_vector(q, K, search_k=sk), queries, truth, args["rss0"])
            rows.append({"params": {"n_trees": n_trees, "search_k": sk}, "build_s": build, "disk_bytes": disk, **row})
            if row["recall@10"] >= 0.999 and row["recall@100"] >= 0.999:
                break
        index.unload()
    return rows


def run_faiss_flat(vectors, queries, truth, folder, args) -> list[dict]:
    import faiss

    start = time.perf_counter()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    build = time.perf_counter() - start
    disk = _disk_bytes(lambda p: faiss.write_index(index, p), folder)
    row = _measure(lambda q: index.search(q[None], K)[1][0], queries, truth, args["rss0"])
    start = time.perf_counter()
    index.search(queries, K)
    row["batch_qps"] = len(queries) / (time.perf_counter() - start)
    return [{"params": {}, "build_s": build, "disk_bytes": disk, **row}]


def run_faiss_hnsw(vectors, queries, truth, folder, args) -> list[dict]:
    import faiss

    start = time.perf_counter()
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    build = time.perf_counter() - start
    disk = _disk_bytes(lambda p: faiss.write_index(index, p), folder)
    rows = []
    for ef in args["ef"]:
        index.hnsw.efSearch = ef
        row = _measure(lambda q: index.search(q[None], K)[1][0], queries, truth, args["rss0"])
        rows.append({"params": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": ef},
                     "build_s": build, "disk_bytes": disk, **row})
    return rows


def run_hnswlib(vectors, queries, truth, folder, args) -> list[dict]:
    import hnswlib

    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, random_seed=1234)
    index.add_items(vectors, np.arange(len(vectors)), num_threads=-1)
    build = time.perf_counter() - start
    disk = _disk_bytes(index.save_index, folder)
    index.set_num_threads(1)
    rows = []
    for ef in args["ef"]:
        index.set_ef(ef)
        row = _measure(lambda q: index.knn_query(q, k=K)[0][0], queries, truth, args["rss0"])
        rows.append({"params": {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef": ef},
                     "build_s": build, "disk_bytes": disk, **row})
    return rows


LIBRARIES = {"exact": run_exact, "annoy": run_annoy, "faiss_flat": run_faiss_flat,
             "faiss_hnsw": run_faiss_hnsw, "hnswlib": run_hnswlib}


def worker(library: str, folder: Path, args: dict) -> None:
    """Subprocess entry: load the vectors, run one library, print its rows as JSON."""
    vectors = np.load(folder / "vectors.npy")
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    rows = LIBRARIES[library](vectors, queries, truth, folder, {**args, "rss0": rss_mb()})
    print("ROWS " + json.dumps(rows))


# ------------------------------------------------------------------ driver

def make_dataset(name: str, base: np.ndarray, n_queries: int, folder: Path) -> dict:
    """Write vectors, queries and exact top-K of dataset ``name`` into ``folder``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.index import ExactIndex

    n, dim = DATASETS[name]
    rng = np.random.default_rng(1)
    if name == "paris":
        vectors = base.astype(np.float32)
        queries = vectors[rng.choice(len(vectors), n_queries, replace=len(vectors) < n_queries)]
        queries = queries + rng.normal(0, 0.01, queries.shape).astype(np.float32)
    else:
        both = derived_vectors(base, n + n_queries, dim)
        vectors, queries = both[:n], both[n:]
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth, _ = ExactIndex(vectors).search(queries, K)
    np.save(folder / "vectors.npy", vectors)
    np.save(folder / "queries.npy", queries.astype(np.float32))
    np.save(folder / "truth.npy", truth)
    return {"n": int(len(vectors)), "dim": int(vectors.shape[1]), "n_queries": int(len(queries)),
            "vector_bytes": int(vectors.nbytes)}


def pareto(rows: list[dict]) -> list[dict]:
    """Rows not dominated in (lower p50 latency, higher recall@10)."""
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (r["p50_ms"], -r["recall@10"])):
        if row["recall@10"] > best:
            front.append(row)
            best = row["recall@10"]
    return front


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["paris", "100k-512", "100k-2048", "1m-512"],
                   choices=sorted(DATASETS))
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    p.add_argument("--queries", type=int, default=200, help="queries per dataset (default 200)")
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    p.add_argument("--output", default="search", help="JSON name under artifacts/bench/ (default search)")
    p.add_argument("--worker", nargs=3, metavar=("LIBRARY", "FOLDER", "ARGS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a.worker[0], Path(a.worker[1]), json.loads(a.worker[2]))
        return 0

    base = paris_descriptors(a.paris_root)
    results = {"k": K, "datasets": {}, "notes": [
        "queries one at a time, k=100; recall against exact search on the same vectors",
        "rss_mb: resident memory after build and queries minus resident memory with the vectors loaded",
        "derived vectors: common.derived_vectors (real Paris lite0 GeM descriptors, neighbour interpolation + noise)",
        "1M x 2048 not run: 8 GB of float32 before any index copy on a shared 24 GB machine"]}
    for name in a.datasets:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-search-{name}-"))
        try:
            info = make_dataset(name, base, a.queries, folder)
            size = "large" if info["n"] >= 1_000_000 else "small"
            args = {"trees": ANNOY_TREES[size], "search_k": ANNOY_SEARCH_K, "ef": HNSW_EF}
            entry = {**info, "libraries": {}}
            for lib in a.libraries:
                print(f"{name}: {lib} ...", flush=True)
                out = subprocess.run([sys.executable, __file__, "--worker", lib, str(folder), json.dumps(args)],
                                     capture_output=True, text=True)
                line = [x for x in out.stdout.splitlines() if x.startswith("ROWS ")]
                if out.returncode or not line:
                    entry["libraries"][lib] = {"error": out.stderr[-2000:]}
                    print(out.stderr[-2000:], flush=True)
                    continue
                entry["libraries"][lib] = json.loads(line[0][5:])
            exact = entry["libraries"].get("exact")
            if exact and "error" not in exact:
                base_ms = exact[0]["p50_ms"]
                for rows in entry["libraries"].values():
                    for row in rows if isinstance(rows, list) else []:
                        row["speedup_vs_exact"] = base_ms / row["p50_ms"]
            if isinstance(entry["libraries"].get("annoy"), list):
                entry["annoy_pareto"] = pareto(entry["libraries"]["annoy"])
                for r in entry["annoy_pareto"]:
                    print(f"  annoy {r['params']}: p50 {r['p50_ms']:.2f} ms, recall@10 {r['recall@10']:.3f}, "
                          f"recall@100 {r['recall@100']:.3f}, x{r.get('speedup_vs_exact', 0):.1f} vs exact")
            results["datasets"][name] = entry
            write_result(a.output, results)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
