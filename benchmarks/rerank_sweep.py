"""Re-ranking parameters against gallery size, on the validation protocol's cached descriptors:
what the neighbour-count rules of ``core.rerank.rules`` are fitted to.

    nice -n 10 .venv/bin/python benchmarks/rerank_sweep.py [--methods alpha_qe dba+alpha_qe ...]

For each basis set (Paris whole and cropped, Corel-1k, Fashion-MNIST) and each gallery fraction
(a seeded random subset of the gallery, the queries whose image is in it), every method's mAP
over its parameter grid, beside no re-ranking. The pure functions are called directly on the
cached vectors (exact search): the ladder (``validation_ladder.py``) then checks the chosen rules
through the normal pipeline. Output: ``artifacts/bench/rerank_sweep.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from core.config import DEFAULT_CONFIG, EmbeddingConfig  # noqa: E402
from core.datasets import ResolvedQuery  # noqa: E402
from core.evaluation.validation import BASIS_SETS, SetArrays, set_arrays, validation_sets  # noqa: E402
from core.index import ExactIndex  # noqa: E402
from core.rerank import rank_by_scores  # noqa: E402
from core.rerank.diffusion import diffusion_scores, knn_affinity  # noqa: E402
from core.rerank.expansion import database_augmentation, query_expansion  # noqa: E402
from core.rerank.kreciprocal import kreciprocal_rerank  # noqa: E402
from core.rerank.kreciprocal import prepare_gallery as kr_prepare  # noqa: E402
from core.rerank.superglobal import superglobal_rerank  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
Method = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def alpha_qe(n: int, alpha: float = 3.0) -> Method:
    def run(q, db, ranking):
        return ExactIndex(db, "cosine").rank_all(query_expansion(q, db, ranking, n, alpha))
    return run


def dba_alpha_qe(n: int, alpha: float = 3.0) -> Method:
    def run(q, db, ranking):
        aug = database_augmentation(db, n, alpha)
        index = ExactIndex(aug, "cosine")
        first = index.rank_all(q)
        return index.rank_all(query_expansion(q, aug, first, n, alpha))
    return run


def diffusion(k: int, alpha: float = 0.99, gamma: float = 3.0) -> Method:
    def run(q, db, ranking):
        return rank_by_scores(diffusion_scores(q, db, knn_affinity(db, k, gamma), k, alpha, gamma), ranking)
    return run


def kreciprocal(k1: int, k2: int, lam: float = 0.3) -> Method:
    def run(q, db, ranking):
        return kreciprocal_rerank(q, ranking, kr_prepare(db, k1, k2), lam)
    return run


def superglobal(m: int, k: int, beta: float = 0.15) -> Method:
    def run(q, db, ranking):
        return superglobal_rerank(q, db, ranking, m, k, beta)
    return run


GRIDS: dict[str, dict[str, Method]] = {
    "alpha_qe": {f"n={n}": alpha_qe(n) for n in (1, 2, 3, 5, 8, 12, 20, 30)},
    "dba+alpha_qe": {f"n={n}": dba_alpha_qe(n) for n in (1, 2, 3, 5, 8, 12, 20, 30)},
    "diffusion": {f"k={k}": diffusion(k) for k in (5, 10, 15, 25, 40, 60, 100)},
    "kreciprocal": {f"k1={k1},k2={k2}": kreciprocal(k1, k2) for k1 in (5, 10, 20, 30, 50, 80)
                    for k2 in (max(1, k1 // 4), max(1, k1 // 2))},
    "superglobal": {f"M={m},K={k}": superglobal(m, k) for m in (50, 100, 200) for k in (3, 9)},
}


def subsample(arrays: SetArrays, fraction: float, seed: int = 0) -> SetArrays:
    """A seeded random ``fraction`` of the gallery, the queries whose image is in it, their
    positives and junk remapped (queries left without a positive dropped)."""
    if fraction >= 1.0:
        return arrays
    n = len(arrays.database)
    keep = np.sort(np.random.default_rng(seed).choice(n, round(n * fraction), replace=False))
    new = {int(old): i for i, old in enumerate(keep)}
    rows, resolved = [], []
    for r, rq in enumerate(arrays.resolved):
        if rq.image_index not in new:
            continue
        pos = frozenset(new[p] for p in rq.positives if p in new)
        if pos:
            rows.append(r)
            resolved.append(ResolvedQuery(rq.query, new[rq.image_index], pos,
                                          frozenset(new[j] for j in rq.junk if j in new), rq.n_positives_listed))
    return SetArrays(arrays.name, arrays.queries[rows], arrays.database[keep], resolved)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--sets", nargs="+", default=list(BASIS_SETS), choices=BASIS_SETS)
    p.add_argument("--backbone", default=DEFAULT_CONFIG.backbone)
    p.add_argument("--pooling", default=DEFAULT_CONFIG.pooling)
    p.add_argument("--out", default="rerank_sweep")
    a = p.parse_args(argv)
    config: EmbeddingConfig = replace(DEFAULT_CONFIG, backbone=a.backbone, pooling=a.pooling)
    results = []
    for vs in validation_sets(a.data, a.sets):
        full = set_arrays(vs, config)
        for fraction in a.fractions:
            arrays = subsample(full, fraction)
            plain = ExactIndex(arrays.database, "cosine").rank_all(arrays.queries)
            base = arrays.map(plain)
            row = {"set": vs.name, "fraction": fraction, "n_images": len(arrays.database),
                   "n_queries": len(arrays.resolved), "none": base, "methods": {}}
            for method in a.methods:
                for name, run in GRIDS[method].items():
                    start = time.perf_counter()
                    value = arrays.map(run(arrays.queries, arrays.database, plain))
                    row["methods"].setdefault(method, {})[name] = {
                        "map": value, "ms_per_query": (time.perf_counter() - start) / len(arrays.resolved) * 1000}
                best = max(row["methods"][method].items(), key=lambda kv: kv[1]["map"])
                print(f"{vs.name:14s} N={row['n_images']:5d}  {method:13s} best {best[0]:14s} "
                      f"{best[1]['map'] * 100:6.2f} (none {base * 100:6.2f})", flush=True)
            results.append(row)
            write_result(a.out, {"config": config.to_dict(), "rows": results, "load_average": list(os.getloadavg())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
