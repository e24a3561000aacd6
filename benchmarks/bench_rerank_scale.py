"""What the default re-ranking (k-reciprocal) costs to prepare as the gallery grows: the time and
memory of ``prepare_gallery`` (the gallery's k-NN lists through its HNSW index, as ``--search
auto`` gives them at these sizes, then one sparse V row per image) at 10k, 20k and 50k derived
1280-d vectors, and the largest gallery whose preparation stays within the bound of
``core/rerank/rules.py`` (``PREPARE_BOUND_SECONDS``, ``PREPARE_BOUND_BYTES``) by the measured cost per
image (both grow linearly with n: each image's V row has a bounded number of non-zeros).

    nice -n 10 python benchmarks/bench_rerank_scale.py --sizes 10000 20000 50000

Vectors as in ``bench_scale_index.py`` (``common.derived_vectors`` of the Paris descriptors);
memory is the bytes of the prepared structures (V by rows and by columns, the neighbour lists),
not counting the gallery vectors, which the store already holds. Writes
``artifacts/bench/rerank_scale.json``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import derived_vectors, load_average, paris_descriptors, write_result  # noqa: E402

from core.cache.descriptors import Embeddings  # noqa: E402
from core.config import EmbeddingConfig  # noqa: E402
from core.index import SearchSettings, open_index  # noqa: E402
from core.rerank import rules  # noqa: E402
from core.rerank.base import RerankContext  # noqa: E402
from core.rerank.kreciprocal import KReciprocalGallery, prepare_gallery  # noqa: E402


def prepared_bytes(g: KReciprocalGallery) -> int:
    sparse = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in (g.vectors, g.by_column))
    return int(sparse + g.neighbours.nbytes + g.cosines.nbytes)


def measure(n: int, base: np.ndarray, work: Path) -> dict:
    vectors = derived_vectors(base, n, base.shape[1], seed=n)
    emb = Embeddings("rerank-scale", EmbeddingConfig(), [f"{i:07d}" for i in range(n)], vectors, work)
    start = time.perf_counter()
    index = open_index(emb, SearchSettings("hnsw"))
    index_s = time.perf_counter() - start
    ctx = RerankContext(emb, None, None, log=lambda _: None, index=index)
    k1 = rules.kreciprocal_k1(n)
    start, cpu = time.perf_counter(), time.process_time()
    g = prepare_gallery(emb.vectors, k1, rules.kreciprocal_k2(k1), ctx.neighbours)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    size = prepared_bytes(g)
    return {"n": n, "k1": k1, "hnsw_build_s": index_s, "prepare_s": seconds, "prepare_cpu_s": cpu_seconds,
            "prepare_bytes": size,
            "nnz_per_row": g.vectors.nnz / n, "s_per_image": seconds / n, "bytes_per_image": size / n,
            "load_average": load_average()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 50_000])
    a = p.parse_args(argv)
    base = paris_descriptors()
    rows = []
    for n in a.sizes:
        with tempfile.TemporaryDirectory() as work:
            rows.append(measure(n, base, Path(work)))
        print(rows[-1])
        largest = rows[-1]
        fits = int(min(rules.PREPARE_BOUND_SECONDS / largest["s_per_image"],
                       rules.PREPARE_BOUND_BYTES / largest["bytes_per_image"]))
        write_result("rerank_scale", {"method": "kreciprocal", "rows": rows, "bound_seconds": rules.PREPARE_BOUND_SECONDS,
                                      "bound_bytes": rules.PREPARE_BOUND_BYTES, "largest_fitting_by_last_row": fits,
                                      "rule_in_use": rules.KRECIPROCAL_MAX_IMAGES})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
