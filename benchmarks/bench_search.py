"""Nearest-neighbour search: exact (NumPy matrix product), Annoy, faiss (flat and HNSW) and
hnswlib on the same vectors, and the project's own indexes as the app and CLI run them (their
search effort tuned at build time by measured recall): which one is the default at each size.

    python benchmarks/bench_search.py                   # real 1k..20k, derived 20k, 100k, 1M (hours)
    python benchmarks/bench_search.py --quick           # a check that it works (minutes)
    python benchmarks/bench_search.py --datasets paris real-10k 100k-512 --queries 100

Datasets:
- ``paris``: the real Paris descriptors (tf_efficientnet_lite0 GeM, 1280-d; queries are
  perturbed gallery vectors);
- ``real-N``: real descriptors of N photos, the first N of ``--real-images`` files made of the
  250 Paris photos and crops, flips and rescalings of them (``common.augmented_images``, longer
  side up to 512), embedded with the same config and cached; the queries are further
  augmentations, not gallery items;
- ``derived-N`` and ``100k-512``, ``1m-512``, ...: N × D vectors derived from the Paris
  descriptors (``common.derived_vectors``: points between real neighbours plus noise, mapped to
  D dimensions). ``derived-N`` has the size and dimension of ``real-N``: the two side by side
  say how optimistic derived vectors are. 1M × 2048 (8 GB of float32 before any index copy) is
  left out on this 24 GB machine; 2048-d stops at 100k.

Each library runs in its own subprocess, so that its build time, index size on disk and resident
memory (RSS after build and queries minus RSS with the vectors loaded) are its own. Queries are
answered one at a time with k = 100 (latency p50/p95, queries/s); recall@10 and recall@100 are
measured against exact search; ``speedup_vs_exact`` is exact p50 / the row's p50 in the same run.
``core_exact16``, ``core_annoy`` and ``core_hnsw`` are ``core.index`` (float16 exact search, and
Annoy/HNSW with the effort their build chose). For each dataset the fastest setting of each
library at recall@10 ≥ 0.95 is listed, and ``default_by_size`` gives the fastest of all
(``core.index.choice.fastest_at_target``): what ``--search auto`` should use at that size.
Writes ``artifacts/bench/search.json`` (``--output``) with the load average around each library.
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
from common import (
    BENCH_CONFIG,
    DEFAULT_PARIS,
    augmented_images,
    derived_vectors,
    load_average,
    paris_descriptors,
    paris_paths,
    percentiles_ms,
    rss_mb,
    write_result,
)

K = 100
DATASETS = {"paris": (0, 0), "100k-512": (100_000, 512), "100k-2048": (100_000, 2048),
            "1m-512": (1_000_000, 512), "1m-2048": (1_000_000, 2048),
            **{f"{kind}-{n // 1000}k": (n, 0) for kind in ("real", "derived") for n in (1_000, 2_000, 5_000, 10_000, 20_000)}}
DEFAULT_DATASETS = ["paris", "real-1k", "real-2k", "real-5k", "real-10k", "real-20k", "derived-20k", "100k-512", "1m-512"]
QUICK_DATASETS = ["paris", "real-1k", "derived-1k", "100k-512"]
# Annoy trees per dataset size: every (n_trees, search_k) pair is one point of the Pareto front.
ANNOY_TREES = {"small": (10, 25, 50, 100), "large": (25, 50, 100)}
ANNOY_SEARCH_K = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
HNSW_EF = (100, 128, 192, 256, 384, 512)
HNSW_EF_QUICK = (100, 256)
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


def _core_index(kind: str, vectors, queries, truth, folder, args) -> list[dict]:
    """The project's index as ``SearchEngine`` runs it: built with its own recall tuning, then
    queried one at a time with the effort it chose (k = 100 raises HNSW's ef to 100)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.config import AnnoyParams, EmbeddingConfig, HnswParams
    from core.index import AnnoyIndex, ExactIndex
    from core.index.hnsw import HnswIndex

    ids = [str(i) for i in range(len(vectors))]
    cfg = EmbeddingConfig()
    start = time.perf_counter()
    if kind == "exact16":
        index, params, disk = ExactIndex(vectors, storage="float16"), {}, int(vectors.nbytes // 2)
    elif kind == "annoy":
        index = AnnoyIndex.build(vectors, folder, cfg, AnnoyParams(), ids)
        params, disk = {k: index.meta[k] for k in ("n_trees", "search_k", "recall@10")}, index.meta["file_bytes"]
    else:
        index = HnswIndex.build(vectors, folder, cfg, HnswParams(), ids)
        params, disk = {k: index.meta[k] for k in ("m", "ef_construction", "ef", "recall@10")}, index.meta["file_bytes"]
    build = time.perf_counter() - start
    params = {("tuned_recall@10" if k == "recall@10" else k): v for k, v in params.items()}
    rows = []
    for k in (K, 10):               # k = 10: the app's default call, where HNSW searches with its own ef
        row = _measure(lambda q: index.search(q, k)[0][0], queries, truth, args["rss0"])
        if k < K:
            row["recall@100"] = None
        rows.append({"params": {**params, "k": k}, "build_s": build, "disk_bytes": disk, **row})
    return rows


def run_core_exact16(vectors, queries, truth, folder, args) -> list[dict]:
    return _core_index("exact16", vectors, queries, truth, folder, args)


def run_core_annoy(vectors, queries, truth, folder, args) -> list[dict]:
    return _core_index("annoy", vectors, queries, truth, folder, args)


def run_core_hnsw(vectors, queries, truth, folder, args) -> list[dict]:
    return _core_index("hnsw", vectors, queries, truth, folder, args)


LIBRARIES = {"exact": run_exact, "annoy": run_annoy, "faiss_flat": run_faiss_flat,
             "faiss_hnsw": run_faiss_hnsw, "hnswlib": run_hnswlib, "core_exact16": run_core_exact16,
             "core_annoy": run_core_annoy, "core_hnsw": run_core_hnsw}


def worker(library: str, folder: Path, args: dict) -> None:
    """Subprocess entry: load the vectors, run one library, print its rows as JSON."""
    vectors = np.load(folder / "vectors.npy")
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    rows = LIBRARIES[library](vectors, queries, truth, folder, {**args, "rss0": rss_mb()})
    print("ROWS " + json.dumps(rows))


# ------------------------------------------------------------------ driver

def real_descriptors(n: int, n_queries: int, paris_root: Path, work: Path) -> np.ndarray:
    """[n + n_queries, 1280] real descriptors (``BENCH_CONFIG``) of Paris photos and augmentations
    of them; rows in file order (the 250 originals first). Files and descriptors are cached
    (``work`` and the gallery ``bench-augmented``), so a larger run embeds only the new files."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.cache.descriptors import build_embeddings
    from core.cache.galleries import register_gallery
    from core.progress import Reporter

    files = augmented_images(paris_paths(paris_root), work / "search-photos", n + n_queries, min_side=256,
                             max_side=BENCH_CONFIG.max_size)
    gallery = register_gallery("bench-augmented", work / "search-photos")
    emb = build_embeddings(gallery, BENCH_CONFIG, reporter=Reporter(log=lambda m: print(m, flush=True)))
    row = {image_id: i for i, image_id in enumerate(emb.ids)}
    return emb.vectors[[row[Path(f).name] for f in files]]


def make_dataset(name: str, base: np.ndarray, n_queries: int, folder: Path, real: np.ndarray | None) -> dict:
    """Write vectors, queries and exact top-K of dataset ``name`` into ``folder``; ``real`` holds
    the real descriptors (the last rows are the queries) for the ``real-N`` datasets."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.index import ExactIndex

    n, dim = DATASETS[name]
    rng = np.random.default_rng(1)
    if name == "paris":
        vectors = base.astype(np.float32)
        queries = vectors[rng.choice(len(vectors), n_queries, replace=len(vectors) < n_queries)]
        queries = queries + rng.normal(0, 0.01, queries.shape).astype(np.float32)
    elif name.startswith("real-"):
        vectors, queries = real[:n], real[len(real) - n_queries:]
    else:
        both = derived_vectors(base, n + n_queries, dim or base.shape[1])
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


PROJECT_BACKENDS = {"exact": "exact", "core_exact16": "exact16", "core_annoy": "annoy", "core_hnsw": "hnsw"}


def fastest_per_library(libraries: dict) -> dict:
    """Each library's fastest row at recall@10 ≥ 0.95 (k = 100 rows, the same call for all), the
    fastest library of all, and the default this size should get among the project's backends
    (``PROJECT_BACKENDS``, ``core.index.choice.default_at_size``: exact within its time budget,
    else the fastest), with its p50 over the fastest library's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.index.choice import Measured, default_at_size, fastest_at_target

    best = {}
    for lib, rows in libraries.items():
        if not isinstance(rows, list):
            continue
        points = [(Measured(lib, r["p50_ms"], r["recall@10"]), r) for r in rows if r["params"].get("k", K) == K]
        top = fastest_at_target([m for m, _ in points])
        if top is not None:
            row = next(r for m, r in points if m == top)
            best[lib] = {"params": row["params"], "p50_ms": row["p50_ms"], "p95_ms": row["p95_ms"],
                         "recall@10": row["recall@10"], "recall@100": row["recall@100"], "build_s": row["build_s"]}
    overall = fastest_at_target([Measured(lib, b["p50_ms"], b["recall@10"]) for lib, b in best.items()])
    ours = default_at_size([Measured(PROJECT_BACKENDS[lib], b["p50_ms"], b["recall@10"]) for lib, b in best.items()
                            if lib in PROJECT_BACKENDS])
    return {"per_library": best, "fastest": overall.backend if overall else None,
            "default": ours.backend if ours else None,
            "default_over_fastest_p50": ours.p50_ms / overall.p50_ms if ours and overall else None}


def derived_vs_real(datasets: dict) -> dict:
    """For each size measured both on real and on derived vectors: recall@10 of every library
    setting on both, and how much higher the derived one is (the optimism of derived vectors)."""
    out = {}
    for name, real in datasets.items():
        twin = datasets.get(name.replace("real-", "derived-")) if name.startswith("real-") else None
        if twin is None:
            continue
        rows = []
        for lib, real_rows in real["libraries"].items():
            twin_rows = twin["libraries"].get(lib)
            if not isinstance(real_rows, list) or not isinstance(twin_rows, list) or lib.startswith("core_"):
                continue
            by_params = {json.dumps(r["params"], sort_keys=True): r for r in twin_rows}
            for r in real_rows:
                t = by_params.get(json.dumps(r["params"], sort_keys=True))
                if t is not None:
                    rows.append({"library": lib, "params": r["params"], "real_recall@10": r["recall@10"],
                                 "derived_recall@10": t["recall@10"], "optimism": t["recall@10"] - r["recall@10"],
                                 "real_p50_ms": r["p50_ms"], "derived_p50_ms": t["p50_ms"]})
        out[name] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=None, choices=sorted(DATASETS),
                   help=f"default {' '.join(DEFAULT_DATASETS)}; --quick: {' '.join(QUICK_DATASETS)}")
    p.add_argument("--quick", action="store_true", help="small datasets, fewer settings: checks that it works")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cbir-bench-search",
                   help="folder of the augmented photos of the real-N datasets (reused between runs)")
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    p.add_argument("--queries", type=int, default=200, help="queries per dataset (default 200)")
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    p.add_argument("--output", default="search", help="JSON name under artifacts/bench/ (default search)")
    p.add_argument("--worker", nargs=3, metavar=("LIBRARY", "FOLDER", "ARGS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a.worker[0], Path(a.worker[1]), json.loads(a.worker[2]))
        return 0
    datasets = a.datasets or (QUICK_DATASETS if a.quick else DEFAULT_DATASETS)
    if a.quick:
        a.queries = min(a.queries, 50)

    base = paris_descriptors(a.paris_root)
    n_real = max([DATASETS[d][0] for d in datasets if d.startswith("real-")], default=0)
    real = real_descriptors(n_real, a.queries, a.paris_root, a.work) if n_real else None
    results = {"k": K, "quick": a.quick, "load_average_start": load_average(), "datasets": {}, "notes": [
        "queries one at a time, k=100; recall against exact search on the same vectors",
        "rss_mb: resident memory after build and queries minus resident memory with the vectors loaded",
        "derived vectors: common.derived_vectors (real Paris lite0 GeM descriptors, neighbour interpolation + noise)",
        "real-N: descriptors of real photos (Paris and crops/flips/rescalings of them), queries are other augmentations",
        "core_*: the project's indexes (core.index) with the effort their build chose by measured recall",
        "1M x 2048 not run: 8 GB of float32 before any index copy on a shared 24 GB machine"]}
    for name in datasets:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-search-{name}-"))
        try:
            info = make_dataset(name, base, a.queries, folder, real)
            size = "large" if info["n"] >= 1_000_000 else "small"
            args = {"trees": ANNOY_TREES[size][:2] if a.quick else ANNOY_TREES[size],
                    "search_k": ANNOY_SEARCH_K[:4] if a.quick else ANNOY_SEARCH_K,
                    "ef": HNSW_EF_QUICK if a.quick else HNSW_EF}
            entry = {**info, "libraries": {}, "load_average": {}}
            for lib in a.libraries:
                print(f"{name}: {lib} ...", flush=True)
                entry["load_average"][lib] = {"before": load_average()}
                out = subprocess.run([sys.executable, __file__, "--worker", lib, str(folder), json.dumps(args)],
                                     capture_output=True, text=True)
                entry["load_average"][lib]["after"] = load_average()
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
            entry["at_target"] = fastest_per_library(entry["libraries"])
            for lib, b in entry["at_target"]["per_library"].items():
                print(f"  {lib} at recall@10 >= 0.95: p50 {b['p50_ms']:.3f} ms ({b['params']}, recall@10 "
                      f"{b['recall@10']:.3f})", flush=True)
            results["datasets"][name] = entry
            results["default_by_size"] = {d: {"n": e["n"], "dim": e["dim"], **{k: e["at_target"][k] for k in (
                "default", "fastest", "default_over_fastest_p50")}} for d, e in results["datasets"].items()}
            results["derived_vs_real"] = derived_vs_real(results["datasets"])
            results["load_average_end"] = load_average()
            write_result(a.output, results)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
