"""A gallery's store at 10k, 100k and 1M descriptors: append, open, and a search process's memory.

The vectors are derived from real descriptors: the 250 Paris images embedded with the pinned
benchmark config (``common.BENCH_CONFIG``, 1280-d GeM), then ``common.derived_vectors``: random
points between a real descriptor and one of its 10 nearest real neighbours, plus Gaussian noise
(relative norm 0.35), renormalised. They differ from real ones: 250 sources only, so the gallery
is a cloud around 250 points instead of a million different photos, and the noise makes near
duplicates rarer than in a real photo collection; the costs measured here (bytes written and
read, ids parsed) do not depend on the values.

Each gallery is imported (``core.cache.transfer.import_vectors``, 50,000 rows per import) into a
throw-away artifacts folder under ``--dir`` (about 5.2 GB at 1M; deleted afterwards). Then:

- ``append_1000``: one ``core.cache.store.append`` of 1,000 new rows: what an extraction
  checkpoint or an incremental update commits. Acceptance: at 1M at most 2x the 10k figure.
- ``import_1000``: ``python -m core import``'s work for 1,000 new rows, which also reads every id
  of the gallery (to replace those already there).
- a fresh process (its memory before opening is the interpreter, NumPy and PyTorch, which the
  index package imports) opens the gallery (``load_embeddings``: ids read, vectors memory-mapped) and
  runs exact searches (``ExactIndex``) of 5 derived queries; its open time, search p50 and
  resident memory before opening, after opening and after searching: RSS, split into RssAnon
  (its private memory: what opening and searching allocate) and RssFile (the mapped vector pages
  it touched: page cache, shared by every process that maps the gallery, evictable).

    python benchmarks/bench_scale.py --sizes 10000 100000 1000000 --dir /tmp/bench-scale
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import derived_vectors, load_average, paris_descriptors, write_result

from core.cache import store
from core.cache.descriptors import cache_dir
from core.cache.transfer import import_vectors
from core.config import EmbeddingConfig

DIM = 1280
PART = 50_000
CONFIG = EmbeddingConfig(pooling="gem", scales=(1.0,), max_size=512)      # the config the rows declare
REPEATS = 5

SEARCHER = """
import json, sys, time, numpy as np, psutil

def mem():
    \"\"\"RSS, its anonymous part (private memory) and its file part (mapped pages, shared), MB.\"\"\"
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Rss"))
    return {k: int(status[k].split()[0]) / 1e3 for k in ("RssAnon", "RssFile")} | {
        "rss": psutil.Process().memory_info().rss / 1e6}

t = time.perf_counter()
from core.cache.descriptors import load_embeddings
from core.config import EmbeddingConfig
from core.index import ExactIndex
imported = time.perf_counter() - t
config = EmbeddingConfig.from_dict(json.loads(sys.argv[2]))
queries = np.load(sys.argv[3])
before = mem()
t = time.perf_counter()
emb = load_embeddings(sys.argv[1], config)
open_s = time.perf_counter() - t
after_open = mem()
index = ExactIndex(emb.vectors)
times = []
for q in queries:
    t = time.perf_counter()
    scores = index.scores(q[None])[0]
    top = np.argpartition(-scores, 10)[:10]
    times.append(time.perf_counter() - t)
after = mem()
print(json.dumps({"n_opened": len(emb.ids), "open_s": open_s, "search_p50_s": float(np.median(times)),
                  "memory_mb": {"before_open": before, "after_open": after_open, "after_search": after}}))
"""


def build(base: np.ndarray, name: str, n: int) -> None:
    for part, start in enumerate(range(0, n, PART)):
        m = min(PART, n - start)
        rows = derived_vectors(base, m, DIM, part=part)
        import_vectors(name, CONFIG, [f"d{start + i:07d}" for i in range(m)], rows, DIM)


def time_appends(name: str, base: np.ndarray, n: int) -> tuple[list[float], list[float]]:
    """Seconds of REPEATS store appends and REPEATS imports of 1,000 new rows each."""
    directory = cache_dir(name, CONFIG)
    appends, imports = [], []
    for r in range(REPEATS):
        rows = derived_vectors(base, 1000, DIM, part=10_000 + r)
        ids = [f"new{r}-{i}" for i in range(1000)]
        t = time.perf_counter()
        store.append(directory, ids, ["appended"] * 1000, rows)
        appends.append(time.perf_counter() - t)
        t = time.perf_counter()
        import_vectors(name, CONFIG, [f"imp{r}-{i}" for i in range(1000)], rows, DIM)
        imports.append(time.perf_counter() - t)
    return appends, imports


def search_process(name: str, queries: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, "-c", SEARCHER, name, json.dumps(CONFIG.to_dict()), str(queries)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(base: np.ndarray, n: int, folder: Path) -> dict:
    name = f"scale{n}"
    t = time.perf_counter()
    build(base, name, n)
    build_s = time.perf_counter() - t
    appends, imports = time_appends(name, base, n)
    queries = folder / "queries.npy"
    np.save(queries, derived_vectors(base, 5, DIM, part=20_000))
    row = {"n": n, "build_s": build_s, "append_1000_s": float(np.median(appends)), "append_1000_all_s": appends,
           "import_1000_s": float(np.median(imports)), **search_process(name, queries),
           "disk_mb": sum(p.stat().st_size for p in cache_dir(name, CONFIG).iterdir()) / 1e6,
           "load_average": load_average()}
    shutil.rmtree(cache_dir(name, CONFIG).parent, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-scale"))
    a = ap.parse_args()
    base = paris_descriptors()
    saved = os.environ.get("CBIR_ARTIFACTS")
    os.environ["CBIR_ARTIFACTS"] = str(a.dir / "artifacts")
    try:
        rows = [measure(base, n, a.dir) for n in a.sizes]
    finally:
        shutil.rmtree(a.dir, ignore_errors=True)
        if saved is None:
            os.environ.pop("CBIR_ARTIFACTS")
        else:
            os.environ["CBIR_ARTIFACTS"] = saved
    by_n = {r["n"]: r for r in rows}
    ratio = (by_n[max(by_n)]["append_1000_s"] / by_n[min(by_n)]["append_1000_s"]) if len(by_n) > 1 else None
    write_result("scale", {"dim": DIM, "config": CONFIG.label(), "rows": rows,
                           "append_ratio_largest_to_smallest": ratio,
                           "acceptance": "append_1000_s at the largest size <= 2x at the smallest",
                           "passed": ratio is not None and ratio <= 2.0,
                           "command": f"python benchmarks/bench_scale.py --sizes {' '.join(map(str, a.sizes))}"})


if __name__ == "__main__":
    main()
