"""RParis6k with distractors, end to end: the +R1M protocol on this machine.

The shipped 250 Paris images are the benchmark gallery (RParis6k's Medium and Hard ground truth
restricted to them: 12 queries x 2 protocols). The distractors are derived from real descriptors
of *other* photos: the 1,000 Corel-1k images embedded with the default config, then
``common.derived_vectors(rotate=False)``: random points between a Corel descriptor and one of its
10 nearest Corel neighbours plus Gaussian noise (relative norm 0.35), renormalised, in the
descriptors' own space. They differ from revisitop's 1M photos: 1,000 sources instead of a million
different pictures (a cloud around each), and none shows a Paris landmark, so they are easier
negatives than the real R1M (which holds some Paris-like buildings); what is measured here is
what the tool does with a million rows, and whether the default search loses mAP against exact
search over the same gallery.

Steps, each timed: embed Corel-1k (cached), derive and import N distractors (``python -m core
import``'s ``import_vectors``, 50,000 rows a part) into gallery ``distractors-N``, then evaluate
RParis6k Medium and Hard with ``--distractors`` under exact search and under the default search
(``auto``), without re-ranking and with the default re-ranking; and ``python -m core search
--json`` of one Paris photo against the distractor gallery in a fresh process, twice (the first
may build that gallery's index): its stage times and peak resident memory (VmHWM). A second run
of the benchmark reuses the imported gallery and the joined store.

    python benchmarks/bench_distractors.py --n 100000 --dir /tmp/bench-distractors
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DEFAULT_PARIS, derived_vectors, load_average, write_result

SHARED = DEFAULT_PARIS.parent
REPO = Path(__file__).resolve().parent.parent
PART = 50_000


def corel_descriptors():
    from core.cache.descriptors import build_embeddings
    from core.cache.galleries import register_gallery
    from core.config import DEFAULT_CONFIG
    from core.progress import Reporter

    return build_embeddings(register_gallery("corel1k", SHARED / "corel1k"), DEFAULT_CONFIG,
                            reporter=Reporter.quiet()).vectors


def import_distractors(name: str, n: int) -> dict:
    from core.cache.descriptors import CacheError, load_embeddings
    from core.cache.transfer import import_vectors
    from core.config import DEFAULT_CONFIG

    try:
        if len(load_embeddings(name, DEFAULT_CONFIG).ids) == n:
            return {"reused": True, "load": load_average()}      # imported by an earlier run: nothing to redo
    except CacheError:
        pass
    start = time.perf_counter()
    base = corel_descriptors()
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    for part, first in enumerate(range(0, n, PART)):
        m = min(PART, n - first)
        vectors = derived_vectors(base, m, base.shape[1], seed=1, part=part, rotate=False)
        import_vectors(name, DEFAULT_CONFIG, [f"d{i:07d}" for i in range(first, first + m)], vectors, base.shape[1])
    return {"corel_embed_seconds": embed_s, "import_seconds": time.perf_counter() - start, "load": load_average()}


def evaluate_with(name: str, protocol: str, search: str, rerank: str) -> dict:
    from core.cache.galleries import register_gallery
    from core.config import DEFAULT_CONFIG
    from core.datasets import load_ground_truth
    from core.evaluation.pipeline import QUIET, evaluate
    from core.index import SearchSettings
    from core.rerank import create_reranker

    gallery = register_gallery("paris6k", DEFAULT_PARIS / "jpg", DEFAULT_PARIS / "gt", "rparis6k")
    gt = load_ground_truth("rparis6k", DEFAULT_PARIS / "gt", protocol)
    Path("/proc/self/clear_refs").write_text("5")          # resets VmHWM: each run's own peak
    start = time.perf_counter()
    s = evaluate(gallery, gt, DEFAULT_CONFIG, SearchSettings(search), create_reranker(rerank), options=QUIET,
                 distractors=name)
    return {"protocol": s.protocol_label, "search": s.search.to_dict(), "rerank": s.rerank_label or "none",
            "n_images": s.n_images, "map": s.map, "seconds": time.perf_counter() - start,
            "index_build_seconds": s.index_build_seconds, "query_search_ms": s.query_search_ms,
            "rerank_ms_per_query": s.rerank.extra_ms_per_query, "rerank_prepare_seconds": s.rerank.offline_seconds,
            "peak_rss_mb": peak_rss_mb(), "load": load_average()}


def peak_rss_mb() -> float:
    """This process's peak resident memory since the last reset (VmHWM)."""
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1e3


def search_json(name: str) -> dict:
    query = DEFAULT_PARIS / "jpg" / "paris_louvre_000081.jpg"
    # VmHWM, not ru_maxrss: the latter survives exec, so a child of a large process reports its parent's
    code = ("import runpy, sys; sys.argv = ['core'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('core', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print('PEAK_RSS_MB', int(hwm) / 1e3, file=sys.stderr)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "search", str(query), "--name", name, "-k", "10", "--json"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    out = json.loads(done.stdout)
    peak = float(done.stderr.rsplit("PEAK_RSS_MB", 1)[1].split()[0])
    return {"wall_seconds": time.perf_counter() - start, "search": out["search"], "times_ms": out["times_ms"],
            "top3": [(r["id"], round(r["score"], 4)) for r in out["results"][:3]], "peak_rss_mb": peak,
            "load": load_average()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="distractors (default 100,000)")
    p.add_argument("--dir", default="/tmp/bench-distractors", help="throw-away artifacts folder")
    p.add_argument("--searches", nargs="+", default=["exact", "auto"])
    p.add_argument("--reranks", nargs="+", default=["none", "kreciprocal"])
    a = p.parse_args()
    os.environ["CBIR_ARTIFACTS"] = str(Path(a.dir) / "artifacts")
    name = f"distractors-{a.n}"
    result = {"n_distractors": a.n, "load_at_start": load_average(), "import": import_distractors(name, a.n)}
    print(json.dumps(result["import"]), flush=True)
    result["runs"] = []
    for protocol in ("medium", "hard"):
        for search in a.searches:
            for rerank in a.reranks:
                result["runs"].append(evaluate_with(name, protocol, search, rerank))
                print(json.dumps(result["runs"][-1]), flush=True)
    # the first may build the distractor gallery's own index; the second is a search as every later one
    result["search_json"] = {"first": search_json(name), "again": search_json(name)}
    print(json.dumps(result["search_json"]), flush=True)
    write_result(f"distractors-{a.n}", result)


if __name__ == "__main__":
    main()
