"""Cost of each descriptor-level re-ranking with its default (rule-set) parameters, on the cached
validation descriptors of one gallery: the once-per-gallery part and the milliseconds per query,
each also as a ratio to alpha-QE measured in the same run (this machine's load varies).

    nice -n 10 .venv/bin/python benchmarks/bench_rerank.py [--set corel1k] [--queries 200]

Output: ``artifacts/bench/rerank_cost.json`` with the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from core.config import DEFAULT_CONFIG  # noqa: E402
from core.evaluation.validation import BASIS_SETS, set_arrays, validation_sets  # noqa: E402
from core.index import ExactIndex  # noqa: E402
from core.rerank import RERANKERS, PreparedStore, RegionQuery, RerankContext, apply_reranker, create_reranker  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--set", default="corel1k", choices=BASIS_SETS)
    p.add_argument("--queries", type=int, default=200)
    a = p.parse_args(argv)
    load_before = list(os.getloadavg())
    vs = validation_sets(a.data, [a.set])[0]
    arrays = set_arrays(vs, DEFAULT_CONFIG)
    ctx = RerankContext(arrays.embeddings, vs.gallery, None, log=lambda m: None)
    queries = arrays.queries[:a.queries]
    plain = ExactIndex(arrays.database).rank_all(queries)
    regions = [RegionQuery(None) for _ in queries]
    rows = {}
    for name in [n for n in RERANKERS if n != "none" and not RERANKERS[n].needs_image]:
        reranker = create_reranker(name).for_gallery(len(arrays.database))
        store = PreparedStore()
        start = time.perf_counter()
        out = apply_reranker(reranker, plain, queries, regions, ctx, store)
        total = time.perf_counter() - start
        again = apply_reranker(reranker, plain, queries, regions, ctx, store)        # prepared part reused
        rows[name] = {"label": reranker.label(), "offline_seconds": out.offline_seconds,
                      "ms_per_query": again.extra_ms_per_query, "first_call_seconds": total,
                      "changed_rows": int((out.ranking != plain).any(axis=1).sum())}
    base = rows["alpha_qe"]["ms_per_query"]
    for name, r in rows.items():
        r["ratio_to_alpha_qe"] = r["ms_per_query"] / base if base else float("nan")
        print(f"{name:13s} {r['label']:16s} prepare {r['offline_seconds']:6.2f} s   {r['ms_per_query']:7.2f} ms/query "
              f"({r['ratio_to_alpha_qe']:5.1f}x alpha-QE)")
    write_result("rerank_cost", {"set": a.set, "n_images": len(arrays.database), "n_queries": len(queries),
                                 "config": DEFAULT_CONFIG.to_dict(), "load_average_before": load_before,
                                 "rows": rows, "note": "descriptor-level methods, default parameters (rules)"})
    print(f"load average before {load_before}, after {list(np.round(os.getloadavg(), 2))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
