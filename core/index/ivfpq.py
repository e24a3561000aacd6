"""A compressed index for galleries whose vectors do not fit comfortably in memory: faiss IVF-PQ
(an inverted file of ``nlist`` k-means cells, each vector stored as ``pq_m`` one-byte product-
quantisation codes: 128 bytes instead of 5,120 for a 1280-d float32 vector), its top ``rescore``
candidates re-scored exactly from the store's (memory-mapped) vectors, so that scores are exact
and only recall is approximate.

Built in bounded memory: the coarse quantiser and the PQ codebooks are trained on a random
sample of at most ``TRAIN_SAMPLE`` vectors, then the gallery is added in chunks of ``ADD_CHUNK``
rows read from the store; memory is the codes (about 136 bytes an item) plus one chunk. ``nprobe``
(the cells searched) is the search effort, tuned at build time by measured recall like every saved
index's (``core.index.stored``), with the same checks before a load.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.index.base import IndexParams, rescored
from core.index.stored import StoredIndex

TRAIN_SAMPLE = 50_000       # vectors the quantisers are trained on (faiss asks 39 per centroid at least)
# Rows read from the store and added at a time. faiss encodes a batch through distance tables of
# pq_m x 256 floats a row (64 kB at pq_m 64): adding 10,000 x 1280 at once raised the peak resident
# memory by 580 MB, in chunks of 2,000 by 42 MB (measured with VmHWM).
ADD_CHUNK = 2_000
MAX_LISTS = 256             # k-means cells (see default_lists)
# faiss's OpenMP threads spin while they wait for each other: on 2 cores shared with other work (load
# average 17-19) training IVF71,PQ16 on 5,000 x 64 took 3.0 s with one thread against 22-30 s with two
# (0.86 against 5.8-7.5 s of CPU). Every call of this module runs on one thread.
FAISS_THREADS = 1


@contextlib.contextmanager
def _faiss_threads() -> Iterator[None]:
    import faiss

    with contextlib.ExitStack() as restore:
        restore.callback(faiss.omp_set_num_threads, faiss.omp_get_max_threads())
        faiss.omp_set_num_threads(FAISS_THREADS)
        yield


def default_lists(n_items: int) -> int:
    """The number of cells for ``n_items``: √n, at most MAX_LISTS and at most n / 39 (enough
    training points per cell). faiss's rule of thumb is 4–16·√n; on 2 shared cores the build is
    what limits: assigning every vector costs n · nlist · dim multiply-adds (2.6 TFLOP at 1M x 1280
    with 1,000 cells, 0.65 with 256), while scanning a few more codes per cell with the re-scored
    candidates keeps a query within milliseconds."""
    return max(1, min(MAX_LISTS, round(math.sqrt(n_items)), n_items // 39))


def default_sub_quantisers(dim: int) -> int:
    """The largest divisor of ``dim`` up to 128: 128 one-byte codes for 1280, 512 or 2048
    dimensions (at 1M derived 1280-d vectors 64 codes left recall@10 at 0.825 even with 1,024
    candidates re-scored and every cell searched; 128 codes with 4,096 re-scored gave 0.997 at
    nprobe 2, benchmarks/bench_scale_index.py)."""
    return max(m for m in range(1, min(128, dim) + 1) if dim % m == 0)


@dataclass(frozen=True)
class IvfPqParams(IndexParams):
    """Parameters of an IVF-PQ index; ``nlist`` 0: ``default_lists`` of the gallery size;
    ``pq_m`` (one-byte codes per vector; must divide the dimension) 0: ``default_sub_quantisers``;
    ``nprobe`` None: chosen at build time by measured recall."""

    effort = "nprobe"
    minimums = {"nlist": 0, "pq_m": 0, "rescore": 1, "nprobe": 1}      # nlist, pq_m 0: by size / dimension
    nlist: int = 0
    pq_m: int = 0
    # candidates re-scored exactly: with 256, recall@10 stayed at 0.94 on 100k derived 1280-d vectors
    # even with every cell searched, with 1,024 at 0.825 on 1M (PQ64): the true top 10 of a dense
    # neighbourhood were not all among PQ's top candidates. 4,096 (PQ128) reached 0.997 at 1M, 23.7 ms
    # a query (bench_scale_index.py, load 5-8); it reads 21 MB of stored vectors a query.
    rescore: int = 4096
    nprobe: int | None = None



def _metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def _rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of the store's array as contiguous float32 (a memory map reads only those)."""
    return np.ascontiguousarray(vectors[np.sort(rows)], dtype=np.float32)


def _trained(vectors: np.ndarray, metric: str, params: IvfPqParams, seed: int) -> Any:
    import faiss

    n, dim = vectors.shape
    pq_m = params.pq_m or default_sub_quantisers(dim)
    if dim % pq_m:
        raise ValueError(f"IVF-PQ pq_m {pq_m} does not divide the dimension {dim}; choose a divisor (--pq-m)")
    rng = np.random.default_rng(seed)
    sample = _rows(vectors, rng.choice(n, size=min(n, TRAIN_SAMPLE), replace=False))
    nbits = max(1, min(8, int(math.log2(max(2, len(sample) // 39)))))  # 39 training points a code, as faiss asks
    nlist = min(params.nlist or default_lists(n), len(sample))
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}x{nbits}", _metric(metric))
    index.cp.seed = index.pq.cp.seed = seed
    index.pq.cp.niter = 10                      # as the coarse k-means: candidates are re-scored exactly anyway
    index.do_polysemous_training = False        # Hamming pre-filtering we never use: 20x the training time
    index.train(sample)
    return index


class IvfPqIndex(StoredIndex):
    """A faiss IVF-PQ index of one gallery, its candidates re-scored from the exact vectors."""

    name = "ivfpq"
    title = "IVF-PQ (faiss)"
    Params = IvfPqParams
    packages = ("faiss-cpu",)
    efforts = (1, 2, 4, 8, 16, 32, 64, 128, 256)

    @classmethod
    def file_name(cls, metric: str, params: IvfPqParams) -> str:
        return f"ivfpq-{metric}-nlist{params.nlist}-pq{params.pq_m}-r{params.rescore}.faiss"

    @classmethod
    def _build(cls, vectors: np.ndarray, metric: str, params: IvfPqParams, seed: int = 1234) -> Any:
        with _faiss_threads():
            index = _trained(vectors, metric, params, seed)
            for start in range(0, vectors.shape[0], ADD_CHUNK):
                index.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32))
        return index

    @classmethod
    def _save(cls, native: Any, path: Path) -> None:
        import faiss

        faiss.write_index(native, str(path))

    @classmethod
    def _load(cls, path: Path, metric: str, dim: int, n_items: int) -> Any:
        import faiss

        return faiss.read_index(str(path))

    def _tuning_candidates(self, params: IvfPqParams) -> list[int]:
        return [e for e in self.efforts if e < self.native.nlist] + [self.native.nlist]

    def _search(self, queries: np.ndarray, k: int, effort: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's top ``max(k, rescore)`` by compressed codes, then the best ``k`` of them by exact
        scores from the stored vectors."""
        import faiss

        wanted = min(max(k, self.meta.params.rescore), len(self))
        params = faiss.SearchParametersIVF(nprobe=max(1, min(effort or 8, self.native.nlist)))
        with _faiss_threads():
            _, candidates = self.native.search(queries, wanted, params=params)
        return rescored(self.vectors, queries, [np.sort(f[f >= 0]) for f in candidates], k, self.metric)
