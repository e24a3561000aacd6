"""Evaluation speed: 70 queries against a 6k-image gallery, full ranking and every metric.

    python benchmarks/bench_evaluation.py

The ground truth is the real RParis6k one (70 queries, medium protocol: easy + hard relevant,
junk ignored, indices into the 6,322 images); the descriptors are 6,322 vectors derived from the
real Paris descriptors (``common.derived_vectors``, 1280-d), queries 70 more. Three ways to score
the same full rankings, in the same run:
- python loop: plain Python over each ranking (lists and sets, one position at a time);
- per query: ``core.evaluation.metrics.score_query`` for each query (NumPy per query);
- all queries: ``core.evaluation.metrics.score_queries`` (NumPy over the [70, 6322] matrix).
The ranking itself (``ExactIndex.rank_all``) is timed once and added to each. Repeats take the
median. Writes ``artifacts/bench/evaluation.json``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_PARIS, derived_vectors, paris_descriptors, write_result

from core.datasets.revisited import load_gnd
from core.evaluation.metrics import TOP_KS, score_queries, score_query
from core.index import ExactIndex


def python_loop(ranking: list[int], positives: set[int], junk: set[int], ks=TOP_KS) -> dict:
    """Every metric of one query, written as a straightforward loop over the ranking."""
    n_rel = len(positives)
    hits = 0
    ap = old_recall = 0.0
    old_precision = 1.0
    dcg = 0.0
    precision, recall = [], []
    first = None
    found_at = {k: 0 for k in ks}
    kept = 0
    for image in ranking:
        if image in junk:
            continue
        hit = image in positives
        if hit:
            hits += 1
            dcg += 1.0 / math.log2(kept + 2)
            first = first or kept + 1
            for k in ks:
                if kept < k:
                    found_at[k] += 1
        p, r = hits / (kept + 1), (hits / n_rel if n_rel else 0.0)
        if hit:
            ap += (r - old_recall) * (old_precision + p) / 2
        old_recall, old_precision = r, p
        precision.append(p)
        recall.append(r)
        kept += 1
    interp = [max([p for p, r in zip(precision, recall) if r >= level - 1e-12], default=0.0)
              for level in (i / 10 for i in range(11))]
    idcg = sum(1.0 / math.log2(i + 2) for i in range(n_rel))
    return {"ap": ap, "ap_interp11": sum(interp) / 11 if n_rel else 0.0, "ndcg": dcg / idcg if n_rel else 0.0,
            "p@": {k: found_at[k] / k for k in ks}, "first": first, "precision": precision, "recall": recall}


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    gnd = load_gnd(a.paris_root / "gnd_rparis6k.mat")
    n, nq = len(gnd.imlist), len(gnd.easy)
    positives = [set(e) | set(h) for e, h in zip(gnd.easy, gnd.hard)]
    junk = [set(j) for j in gnd.junk]
    vectors = derived_vectors(paris_descriptors(a.paris_root), n + nq, 1280)
    gallery, queries = vectors[:n], vectors[n:]

    rank_s, ranking = timed(lambda: ExactIndex(gallery).rank_all(queries), a.repeats)
    lists = ranking.tolist()
    loop_s, loop = timed(lambda: [python_loop(r, p, j) for r, p, j in zip(lists, positives, junk)], a.repeats)
    perq_s, perq = timed(lambda: [score_query(r, p, j) for r, p, j in zip(ranking, positives, junk)], a.repeats)
    allq_s, allq = timed(lambda: score_queries(ranking, positives, junk), a.repeats)
    agree = max(abs(x["ap"] - y.ap) + abs(y.ap - z.ap) + abs(x["ndcg"] - z.ndcg) + abs(x["ap_interp11"] - z.ap_interp11)
                for x, y, z in zip(loop, perq, allq))
    rows = {name: {"metrics_s": s, "total_s": rank_s + s, "speedup_vs_python_loop": (rank_s + loop_s) / (rank_s + s)}
            for name, s in (("python_loop", loop_s), ("score_query_per_query", perq_s),
                            ("score_queries_all", allq_s))}
    result = {"n_images": n, "n_queries": nq, "dim": int(gallery.shape[1]), "ranking_s": rank_s,
              "methods": rows, "max_metric_difference": agree,
              "map": float(np.mean([s.ap for s in allq]))}
    for name, r in rows.items():
        print(f"{name}: {r['total_s'] * 1000:.0f} ms in all (metrics {r['metrics_s'] * 1000:.0f} ms), "
              f"x{r['speedup_vs_python_loop']:.1f} vs python loop")
    write_result("evaluation", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
